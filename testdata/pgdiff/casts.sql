-- Casts and literals.
SELECT 1::text, 1.5::text, true::text, false::text, NULL::text, 'x'::varchar
SELECT '42'::int, ' 42 '::int, '-7'::int4, '+7'::int8, '32767'::int2
SELECT '1.5'::int
SELECT 'abc'::int
SELECT '2147483648'::int
SELECT '99999'::int2
SELECT '1.5'::numeric, '1.50'::numeric, '  3.25 '::numeric, '1e3'::numeric, '-0.001'::numeric
SELECT '1.5'::float8, '1e300'::float8, 'NaN'::float8, 'Infinity'::float8, '-Infinity'::float8, '0.1'::real
SELECT 'abc'::float8
SELECT 2.5::int, 3.5::int, -2.5::int, 2.5::float8::int, 3.5::float8::int, 2.4999::int
SELECT 1.23456::numeric(5,2), 1.235::numeric(5,2), 123.456::numeric(10,1), 42::numeric(5,2)
SELECT 12345.678::numeric(5,2)
SELECT 'abcdef'::varchar(3), 'ab'::char(4), 'abcdef'::char(3), 'ab'::char(4) || 'x'
SELECT 't'::bool, 'true'::bool, 'yes'::bool, 'on'::bool, '1'::bool, 'f'::bool, 'no'::bool, 'off'::bool, '0'::bool, ' TRUE '::bool
SELECT 'maybe'::bool
SELECT 1::bool, 0::bool, true::int, false::int
SELECT 5::float8::text, 0.5::float4::text, 1e20::float8::text, 100::int8::text
SELECT '2024-03-10'::date, '2024-03-10 12:34:56'::timestamp, '2024-03-10 12:34:56.789'::timestamp, '2024-03-10T12:34:56Z'::timestamptz
SELECT '2024-03-10 12:00:00+02'::timestamptz, '2024-03-10 12:00:00-05:30'::timestamptz, '2024-03-10'::timestamptz
SELECT '12:34:56'::time, '1 day'::interval, '2 hours 30 minutes'::interval, '1 year 2 months 3 days'::interval, '90 minutes'::interval
SELECT '1 mon'::interval, '-1 day'::interval, '1 day -2 hours'::interval, '1.5 days'::interval, '@ 1 hour ago'::interval, '10'::interval, '1:30'::interval
SELECT 'not a date'::date
SELECT '2024-02-30'::date
SELECT 'xyz'::interval
SELECT '00000000-0000-4000-8000-000000000001'::uuid, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid
SELECT 'nope'::uuid
SELECT '{"b":2,"a":1}'::json, '{"b":2,"a":1}'::jsonb, '{"a":1,"a":2}'::jsonb, '[1, 2,3]'::jsonb, '{"a": {"c": 1, "b": [true, null]}}'::jsonb
SELECT '{"a": 1.50, "b": 1e2}'::jsonb, '"x"'::jsonb, '3'::json, 'null'::jsonb
SELECT '{bad json'::json
SELECT '{1,2,3}'::int[], '{a,b,"c d"}'::text[], '{}'::int[], '{1,NULL,3}'::int[]
SELECT CAST(1 AS numeric), CAST(1 AS float8), CAST('5' AS integer), CAST(2.5 AS float4)
SELECT 10::int2 + 1, 10::int2 * 10::int2, 10::int8 / 3, 10::int2 / 3::int2
SELECT 1::float4 + 1, 1::float4 * 1.5::float4, 1::int + 1::float4
SELECT (1.5 + 1)::int, (7/2)::numeric, 7::numeric/2
SELECT '1'::int + '2'::int, '1' || '2'
SELECT 0.1::numeric::float8, 1::numeric(10,3), 2::int8::numeric
SELECT '\x0102'::bytea, 'abc'::bytea
SELECT 42::oid, '42'::oid
