-- String functions and pattern matching.
SELECT length('héllo'), char_length('abc'), character_length(''), octet_length('héllo'), bit_length('ab'), length(NULL)
SELECT lower('ÀbC'), upper('àbc'), lower(NULL)
SELECT substring('hello' FROM 2 FOR 3), substring('hello' FROM 2), substring('hello', 0, 3), substring('hello', -1, 3), substr('hello', 2, 2), substring('hello', 10)
SELECT substring('hello', 2, -1)
SELECT substring('abc123def' FROM '[0-9]+'), substring('abc123def' FROM 'c([0-9])'), substring('abc' FROM 'x')
SELECT position('l' IN 'hello'), position('z' IN 'hello'), strpos('hello', 'lo'), position('' IN 'abc')
SELECT trim('  a b  '), ltrim('  ab'), rtrim('ab  '), trim(both 'x' FROM 'xxaxx'), trim(leading 'x' FROM 'xxa'), trim(trailing 'x' FROM 'axx'), btrim('xyaxy', 'xy')
SELECT replace('aaa', 'a', 'bc'), replace('abc', '', 'x'), replace('abc', 'b', '')
SELECT concat('a', NULL, 'b', 1, true), concat_ws('-', 'a', NULL, 'b'), concat(), concat_ws(',', NULL)
SELECT left('abcde', 2), right('abcde', 2), left('abc', -1), right('abc', -1), left('abc', 10), left('abc', 0)
SELECT split_part('a,b,c', ',', 2), split_part('a,b,c', ',', 5), split_part('a,b,c', ',', -1), split_part('abc', '', 1)
SELECT lpad('ab', 5, 'xy'), rpad('ab', 5, 'xy'), lpad('abcdef', 3), rpad('ab', 4), lpad('ab', 0)
SELECT repeat('ab', 3), repeat('ab', 0), repeat('ab', -1), reverse('abc'), reverse('')
SELECT md5('abc'), md5(''), to_hex(255), to_hex(0), to_hex(2147483647)
SELECT translate('12345', '143', 'ax'), ascii('A'), ascii(''), chr(65), chr(8364)
SELECT starts_with('alphabet', 'alph'), starts_with('alphabet', 'b')
SELECT string_to_array('a,b,,c', ','), string_to_array('a b c', ' '), array_to_string(ARRAY['a', NULL, 'c'], ','), array_to_string(ARRAY[1, 2], '-')
SELECT regexp_replace('foobar', 'o+', 'X'), regexp_replace('foobar', 'o', 'X', 'g'), regexp_replace('Hello', 'l', '', 'g'), regexp_replace('abc', '(b)', '[\1]')
SELECT regexp_split_to_array('a1b22c', '[0-9]+')
SELECT quote_ident('abc'), quote_ident('a b'), quote_ident('A'), quote_literal('it''s'), quote_literal(42)
SELECT format('%s-%s', 'a', 1), format('%I.%I', 'My Table', 'x'), format('%L', 'o''k'), format('%L', NULL), format('100%%')
SELECT 'abc' LIKE 'a%', 'abc' LIKE 'a_c', 'abc' LIKE 'A%', 'abc' ILIKE 'A%', 'abc' NOT LIKE 'b%', 'abc' NOT ILIKE '%B%'
SELECT 'a_c' LIKE 'a\_c', 'abc' LIKE 'a\_c', '100%' LIKE '100\%', 'a\b' LIKE 'a\\b', 'abc' LIKE '%'
SELECT 'a_c' LIKE 'a#_c' ESCAPE '#', 'abc' LIKE 'a#_c' ESCAPE '#'
SELECT 'abc' LIKE 'abc\'
SELECT NULL LIKE 'a', 'a' LIKE NULL, '' LIKE '', '' LIKE '%'
SELECT 'abc' SIMILAR TO 'a%', 'abc' SIMILAR TO 'b%', 'abc' SIMILAR TO '(a|b)%', 'abc' SIMILAR TO '[a-c]+', 'abc' NOT SIMILAR TO 'a_', 'a.c' SIMILAR TO 'a.c', 'abc' SIMILAR TO 'a.c'
SELECT 'abc' ~ 'b', 'abc' ~ '^b', 'ABC' ~* 'b', 'abc' !~ 'z', 'abc' !~* 'B', 'abc' ~ 'a.c', 'a.c' ~ 'a\.c'
SELECT 'foo123' ~ '[0-9]{3}$', 'foo' ~ '^(f|g)oo$', 'x' ~ ''
SELECT event_id FROM system.access.audit WHERE reason LIKE '%\_%' ORDER BY event_id
SELECT event_id FROM system.access.audit WHERE reason LIKE '%50\%%' ORDER BY event_id
SELECT event_id FROM system.access.audit WHERE reason ILIKE '%mixed%' ORDER BY event_id
SELECT event_id FROM system.access.audit WHERE user_identity ~* '^carol' ORDER BY event_id
SELECT event_id FROM system.access.audit WHERE reason SIMILAR TO '%(budget|slash)' ORDER BY event_id
SELECT DISTINCT lower(user_identity) FROM system.access.audit ORDER BY 1
SELECT user_identity, length(user_identity), upper(split_part(user_identity, '@', 1)) FROM system.access.audit GROUP BY 1 ORDER BY 1
SELECT 'a' < 'b' COLLATE "C", 'x' COLLATE "C"
SELECT string_agg(DISTINCT service_name, ', ' ORDER BY service_name) FROM system.access.audit
SELECT initcap('hello world')
SELECT 'foo bar' ~ '\mbar', 'abc' ~ '(?=b)', 'ab12' ~ '\d+', 'AB' ~ '[[:upper:]]+', 'a b' ~ '\s'
SELECT regexp_replace('Hello World', '(\w+) (\w+)', '\2 \1'), regexp_replace('aaa', 'A', 'b', 'gi')
SELECT 'abc' || 1.5, 1.5 || 'abc', true || 'x', ARRAY[1, 2]::text, NULL::int || 'x'
SELECT to_char(TIMESTAMP '2024-03-10 14:05:09', 'Mon DD, YYYY HH12:MI AM'), to_char(TIMESTAMP '2024-03-10 14:05:09', 'Day')
SELECT convert_from('\x616263'::bytea, 'UTF8')
SELECT 'x' || repeat('y', 3) || upper('z'), char_length(repeat('é', 3))
