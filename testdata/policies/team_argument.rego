# A tool's "team" argument must name one of the caller's teams (groups
# called team-<name>): nobody files tickets or reads dashboards for a team
# they are not in.
package mandate.team_argument

deny contains msg if {
	input.method == "tools/call"
	team := input.arguments.team
	not concat("", ["team-", team]) in input.groups
	msg := sprintf("argument team=%q does not match the caller's teams", [team])
}
