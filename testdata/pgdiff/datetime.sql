-- Dates, times, intervals and time zones (the session's TimeZone).
SELECT DATE '2024-03-10' - DATE '2024-03-01', DATE '2024-03-10' + 1, DATE '2024-03-10' - 1, 7 + DATE '2024-03-10'
SELECT DATE '2024-03-10' + INTERVAL '1 day', DATE '2024-01-31' + INTERVAL '1 month', DATE '2024-03-10' - INTERVAL '1 hour'
SELECT TIMESTAMP '2024-03-10 12:00' - TIMESTAMP '2024-03-01 06:30', TIMESTAMP '2024-03-10 12:00' + INTERVAL '90 minutes'
SELECT TIMESTAMPTZ '2024-03-10 12:00+00' - TIMESTAMPTZ '2024-03-09 12:00+00', TIMESTAMPTZ '2024-03-10 12:00+00' + INTERVAL '1 day'
SELECT INTERVAL '1 day' + INTERVAL '2 hours', INTERVAL '1 day' * 3, INTERVAL '3 days' / 2, INTERVAL '1 hour' * 1.5, 2 * INTERVAL '1 minute'
SELECT INTERVAL '1 year 2 months 3 days 04:05:06', INTERVAL '-1 day', INTERVAL '0', INTERVAL '1 day -1 second', INTERVAL '100 hours', INTERVAL '1.25 seconds'
SELECT date_trunc('day', TIMESTAMP '2024-03-10 12:34:56'), date_trunc('month', TIMESTAMP '2024-03-10 12:34:56'), date_trunc('hour', TIMESTAMPTZ '2024-03-10 12:34:56+00')
SELECT date_trunc('year', DATE '2024-03-10'), date_trunc('week', TIMESTAMP '2024-03-10 12:00'), date_trunc('quarter', TIMESTAMP '2024-05-10')
SELECT date_part('year', TIMESTAMP '2024-03-10 12:34:56.5'), date_part('second', TIMESTAMP '2024-03-10 12:34:56.5'), date_part('dow', DATE '2024-03-10'), date_part('doy', DATE '2024-03-10'), date_part('epoch', TIMESTAMPTZ '2024-03-10 00:00+00')
SELECT extract(year FROM TIMESTAMP '2024-03-10 12:34:56.5'), extract(second FROM TIMESTAMP '2024-03-10 12:34:56.5'), extract(epoch FROM TIMESTAMPTZ '2024-03-10 00:00:00.25+00'), extract(hour FROM TIMESTAMPTZ '2024-03-10 15:00+00'), extract(isodow FROM DATE '2024-03-10'), extract(week FROM DATE '2024-03-10'), extract(quarter FROM DATE '2024-03-10')
SELECT extract(epoch FROM INTERVAL '1 day 2 hours'), extract(milliseconds FROM TIMESTAMP '2024-01-01 00:00:01.5'), extract(month FROM DATE '2024-12-01')
SELECT extract(hour FROM DATE '2024-03-10')
SELECT age(TIMESTAMP '2024-03-10', TIMESTAMP '2023-01-31'), age(TIMESTAMP '2024-01-01', TIMESTAMP '2024-03-10 12:00')
SELECT to_char(TIMESTAMP '2024-03-10 14:05:09', 'YYYY-MM-DD HH24:MI:SS'), to_char(DATE '2024-03-10', 'DD/MM/YYYY')
SELECT to_timestamp(0), to_timestamp(1710000000.5)
SELECT make_date(2024, 2, 29), make_timestamp(2024, 3, 10, 12, 30, 15.5)
SELECT TIMESTAMPTZ '2024-03-10 12:00:00+00' AT TIME ZONE 'America/New_York', TIMESTAMP '2024-03-10 12:00:00' AT TIME ZONE 'America/New_York', TIMESTAMPTZ '2024-03-10 12:00:00+00' AT TIME ZONE 'UTC'
SELECT '2024-03-10 12:00:00'::timestamptz::date, '2024-03-10 23:30:00+00'::timestamptz::timestamp, '2024-03-10'::date::timestamptz, '2024-03-10 12:00'::timestamp::timestamptz
SELECT DATE '2024-03-10' < TIMESTAMP '2024-03-10 00:00:01', TIMESTAMPTZ '2024-03-10 00:00+00' = TIMESTAMP '2024-03-10 00:00', DATE '2024-03-10' = TIMESTAMPTZ '2024-03-10 00:00+00'
SELECT isfinite(DATE '2024-03-10'), 'infinity'::timestamp > TIMESTAMP '2024-03-10', 'epoch'::timestamp, 'epoch'::date
SELECT min(event_time), max(event_time), max(event_time) - min(event_time) FROM system.access.audit WHERE service_name <> 'sql' OR event_time < '2025-01-01'
SELECT date_trunc('day', event_time) AS day, count(*) FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1 ORDER BY 1
SELECT event_date, count(*) FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1 ORDER BY 1
SELECT event_id, event_time FROM system.access.audit WHERE event_time BETWEEN '2024-03-10' AND '2024-03-10 12:00' ORDER BY event_time
SELECT count(*) FROM system.access.audit WHERE event_time >= TIMESTAMP '2024-03-11' AND event_time < '2025-01-01'
SELECT event_id, event_time + INTERVAL '1 month' FROM system.access.audit WHERE event_time < '2025-01-01' ORDER BY event_time LIMIT 3
SELECT extract(hour FROM event_time) AS h, count(*) FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1 ORDER BY 1
SELECT to_char(event_time, 'YYYY-MM-DD HH24:MI') FROM system.access.audit WHERE event_time < '2025-01-01' ORDER BY event_time LIMIT 3
SELECT event_time::date, event_time::time FROM system.access.audit WHERE event_time < '2025-01-01' ORDER BY event_time LIMIT 3
SET TimeZone = 'America/New_York'
SELECT TIMESTAMPTZ '2024-03-10 12:00:00+00', '2024-03-10 12:00:00'::timestamptz, '2024-03-10 02:30:00'::timestamptz, '2024-11-03 01:30:00'::timestamptz
SELECT TIMESTAMPTZ '2024-03-09 12:00:00+00' + INTERVAL '1 day', TIMESTAMPTZ '2024-03-09 12:00:00+00' + INTERVAL '24 hours', TIMESTAMPTZ '2024-03-09 12:00:00+00' + INTERVAL '1 day 1 hour'
SELECT date_trunc('day', TIMESTAMPTZ '2024-03-10 03:00:00+00'), extract(hour FROM TIMESTAMPTZ '2024-03-10 12:00:00+00'), TIMESTAMPTZ '2024-03-10 12:00:00+00'::date, TIMESTAMPTZ '2024-03-10 12:00:00+00'::timestamp
SELECT TIMESTAMP '2024-03-10 12:00:00'::timestamptz, DATE '2024-03-10'::timestamptz, TIMESTAMPTZ '2024-03-10 12:00:00+00' AT TIME ZONE 'UTC'
SELECT /* America/New_York */ date_trunc('day', event_time) AS day, count(*) FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1 ORDER BY 1
SELECT /* America/New_York */ event_id, event_time FROM system.access.audit WHERE event_time BETWEEN '2024-03-10' AND '2024-03-10 12:00' ORDER BY event_time
SELECT event_time::date AS d, count(*) FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1 ORDER BY 1
SELECT /* America/New_York */ extract(hour FROM event_time) AS h, count(*) FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1 ORDER BY 1
SELECT event_time::text FROM system.access.audit WHERE event_time < '2025-01-01' ORDER BY event_time LIMIT 2
SET TimeZone = 'Asia/Kolkata'
SELECT TIMESTAMPTZ '2024-03-10 12:00:00+00', '2024-03-10 12:00'::timestamptz, date_trunc('day', TIMESTAMPTZ '2024-03-10 20:00:00+00')
SELECT event_time FROM system.access.audit WHERE event_time < '2025-01-01' ORDER BY event_time LIMIT 3
SET TimeZone = 'UTC'
SELECT TIMESTAMPTZ '2024-03-10 12:00:00-04'
SELECT justify_hours(INTERVAL '36 hours'), justify_days(INTERVAL '45 days')
SELECT now() - INTERVAL '1 day' < now(), current_date <= now()::date, CURRENT_TIMESTAMP >= now() - INTERVAL '1 minute'
SELECT date_bin('15 minutes', TIMESTAMP '2024-03-10 12:34:56', TIMESTAMP '2024-01-01')
SELECT TIMESTAMP '2024-03-10 12:34:56.789123'::timestamp(0), '2024-03-10 12:34:56.5'::timestamp::date
SELECT EXTRACT(DAY FROM INTERVAL '40 days 5 hours'), EXTRACT(YEAR FROM INTERVAL '14 months')
SELECT make_interval(days => 3), INTERVAL '1 day' > INTERVAL '23 hours', INTERVAL '30 days' = INTERVAL '1 month'
