# No calls outside working hours: Monday to Friday, 09:00 to 18:00 UTC.
package mandate.working_hours

deny contains msg if {
	not working_hours
	msg := "calls are allowed on weekdays from 09:00 to 18:00 UTC only"
}

working_hours if {
	ns := time.parse_rfc3339_ns(input.time)
	[hour, _, _] := time.clock([ns, "UTC"])
	hour >= 9
	hour < 18
	not time.weekday([ns, "UTC"]) in {"Saturday", "Sunday"}
}
