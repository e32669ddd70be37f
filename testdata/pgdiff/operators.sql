-- Operators and precedence, NULL logic, integer/numeric/float arithmetic,
-- division and overflow. One statement a line.
SELECT true OR '{"a":"x"}'::json->>'a' LIKE 'y'
SELECT count(*) FROM system.access.audit WHERE true OR request_params->>'statement' LIKE '%x%'
SELECT event_id FROM system.access.audit WHERE decision = 'deny' OR (request_params->>'statement') LIKE '%GRANT%' ORDER BY event_id
SELECT event_id FROM system.access.audit WHERE request_params->>'tool' = 'search' AND decision = 'allow' ORDER BY event_id
SELECT 1 + 2 * 3, (1 + 2) * 3, 2 ^ 3 ^ 2, -2 ^ 2, 10 - 4 - 3
SELECT 1 < 2 = true, NOT true = false, 1 IS NULL = false
SELECT 'a' || 'b' || 'c', 'x' || 1 || 2, 1 + 1 || 'x'
SELECT 7/2, -7/2, 7%3, -7%3, 7/-2
SELECT 7.0/2, 1/3.0, 2.5/0.5
SELECT 7::float8/2, 1::float8/3, 7/2::float8, 10::real/4
SELECT 1/0
SELECT 1%0
SELECT 1.0/0
SELECT 1::float8/0
SELECT 1/0.0
SELECT x/y FROM (VALUES (1, 0)) t(x, y)
SELECT x/y FROM (VALUES (1, 1), (2, 0)) t(x, y)
SELECT 1/0 WHERE false
SELECT 2147483647 + 1
SELECT 2147483647::int4 * 2
SELECT -2147483648 / -1
SELECT 9223372036854775807 + 1
SELECT 32767::int2 + 1::int2
SELECT 2147483647::int8 + 1
SELECT 2147483648, -2147483648, 9223372036854775807, 9223372036854775808
SELECT 1.5, 1.50, 0.1 + 0.2, 1.23e2, 1e3, 1e-3, 12345678901234567890.5
SELECT 0.1::float8 + 0.2::float8, 1e20::float8, 1e-5::float8, 1234567.5::float8, 123456789012345678::float8, 0.000123::float8
SELECT 100.0 * 3, 1.5 * 1.25, 2.50 - 1.5, 1.5 + 1
SELECT 5 % 3.5, 5.5 % 2, -5.5 % 2
SELECT abs(-5), abs(-5.5), abs(-5.5::float8), @ -3
SELECT |/ 16, ||/ 27
SELECT 1 = 1, 1 <> 2, 1 != 2, 2 > 1, 2 >= 2, 1 < 2, 1 <= 0
SELECT NULL = NULL, NULL <> 1, NULL AND false, NULL AND true, NULL OR true, NULL OR false, NOT NULL
SELECT true AND NULL IS NULL, (true AND NULL) IS NULL
SELECT NULL IS DISTINCT FROM NULL, 1 IS DISTINCT FROM NULL, 1 IS NOT DISTINCT FROM 1, NULL IS NOT DISTINCT FROM NULL
SELECT true IS TRUE, NULL IS TRUE, NULL IS NOT TRUE, false IS FALSE, NULL IS UNKNOWN, true IS NOT UNKNOWN
SELECT 1 IN (1, 2), 3 IN (1, 2), NULL IN (1, 2), 1 IN (NULL, 1), 3 IN (NULL, 1), 3 NOT IN (1, NULL), 3 NOT IN (1, 2)
SELECT 2 BETWEEN 1 AND 3, 2 NOT BETWEEN 1 AND 3, 2 BETWEEN 3 AND 1, 2 BETWEEN SYMMETRIC 3 AND 1
SELECT nullif(1, 1), nullif(1, 2), coalesce(NULL, NULL, 3), coalesce(NULL, 'a'), greatest(1, 5, 3), least(1, NULL, 3), greatest(NULL, NULL)
SELECT CASE WHEN 1 > 2 THEN 'a' WHEN 2 > 1 THEN 'b' END, CASE 2 WHEN 1 THEN 'one' WHEN 2 THEN 'two' ELSE 'many' END, CASE WHEN false THEN 1 END
SELECT CASE WHEN x > 0 THEN x ELSE 0.5 END FROM (VALUES (1), (-1)) t(x) ORDER BY 1
SELECT 1 = ANY(ARRAY[1, 2]), 3 = ANY(ARRAY[1, 2]), 3 <> ALL(ARRAY[1, 2]), 1 < ALL(ARRAY[2, 3]), 1 = ANY(ARRAY[NULL, 2]), 2 = ANY(ARRAY[NULL, 2])
SELECT 1 = ANY('{1,2}'), 'b' = ANY('{a,b}'::text[]), 5 > ANY(ARRAY[1, 9])
SELECT (ARRAY[1, 2, 3])[2], (ARRAY[1, 2, 3])[5], (ARRAY[1, 2, 3])[2:3], ARRAY[1, 2] || ARRAY[3], ARRAY[1, 2] || 3, 0 || ARRAY[1]
SELECT ARRAY['a', 'b'], ARRAY[1.5, 2], ARRAY[true, NULL], cardinality(ARRAY[1, 2, 3]), array_length(ARRAY[1, 2], 1)
SELECT ARRAY[1, 2] @> ARRAY[1], ARRAY[1] <@ ARRAY[1, 2], ARRAY[1, 2] && ARRAY[2, 3], ARRAY[1, 2] && ARRAY[5]
SELECT -x, +x, - -x FROM (VALUES (5)) t(x)
SELECT 5 + NULL, NULL * 2, NULL / 0, NULL || 'a', 'a' || NULL
SELECT x FROM (VALUES (1), (2), (3)) t(x) WHERE x > 1 AND x < 3 OR x = 1 ORDER BY x
SELECT x FROM (VALUES (1), (2), (3)) t(x) WHERE NOT x = 2 ORDER BY x
SELECT 1 + '2', '3' * 2, 2 > '1', '10' = 10
SELECT 'abc' < 'abd', 'B' < 'a', 'a' < 'B', '' < 'a'
SELECT 1 = 1.0, 1.0::float8 = 1, 0.1::float4 = 0.1::float8, 3 / 2 = 1
SELECT 2 + 2 = 4 AND 'a' < 'b' OR 1/1 = 0
SELECT div(7, 2), div(-7, 2), mod(7, 3), mod(-7, 3), mod(7.5, 2)
SELECT div(7, 0)
SELECT mod(7, 0)
SELECT 1 + 'a'
SELECT 'a' + 1
SELECT 'abc' = 1
SELECT 1 LIKE '1'
SELECT true + 1
SELECT x / y, x % y FROM (VALUES (7.0, 2), (1.0, 3), (10, 4.0)) t(x, y) ORDER BY 1
SELECT count(*) * 100.0 / (SELECT count(*) FROM system.access.audit) FROM system.access.audit WHERE decision = 'deny'
SELECT round(x, 2), round(x), trunc(x, 1), ceil(x), floor(x) FROM (VALUES (2.345), (-2.5)) t(x) ORDER BY 1
SELECT round(2.5::float8), round(3.5::float8), round(-2.5::float8), ceil(2.1::float8), floor(-2.1::float8), trunc(2.7::float8)
SELECT round(5), ceil(5), sign(-3), sign(0.0), sqrt(2), power(2, 10), exp(1), ln(10), log(1000), log(2, 8)
SELECT pi(), degrees(pi()), radians(180), sin(0), cos(0), atan2(1, 1)
SELECT 1.0::float4 / 3, 0.1::float4, 1e10::float4, 16777217::float4
SELECT -0.0::float8, 0.0::float8 * -1, 'NaN'::float8 = 'NaN'::float8, 'Infinity'::float8 + 1
SELECT 1e308::float8 * 10
SELECT 5 & 3, 5 | 3, 5 # 3, ~5, 1 << 4, 16 >> 2
