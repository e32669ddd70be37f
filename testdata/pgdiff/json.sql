-- JSON operators and functions.
SELECT '{"a":"x"}'::json->>'a', '{"a":"x"}'::json->'a', '{"a":{"b":1}}'::json->'a'->'b', '{"a":{"b":1}}'::json->'a'->>'b'
SELECT '[10,20,30]'::json->1, '[10,20,30]'::json->>-1, '[10,20,30]'::json->5, '{"a":1}'::json->0, '[1]'::json->'0'
SELECT '{"a":null}'::json->>'a', '{"a":null}'::json->'a', '{"a":true}'::json->>'a', '{"a":1.50}'::json->>'a'
SELECT '{"a":[1,{"b":"c"}]}'::json#>'{a,1,b}', '{"a":[1,{"b":"c"}]}'::json#>>'{a,1,b}', '{"a":[1,2]}'::json#>>'{a}', '{"a":1}'::json#>'{}', '{"a":1}'::json#>'{x,y}'
SELECT '{"a.b":1,"$c":2}'::json->>'a.b', '{"a.b":1,"$c":2}'::json->>'$c', '{"x\"y":3}'::json->>'x"y'
SELECT '{"a":1,"b":[1,2]}'::jsonb @> '{"b":[2]}', '{"a":1}'::jsonb @> '{"a":2}', '{"a":1}'::jsonb <@ '{"a":1,"b":2}', '["a","b"]'::jsonb @> '"a"'
SELECT '{"a":1,"b":2}'::jsonb ? 'a', '{"a":1}'::jsonb ? 'z', '["a","b"]'::jsonb ? 'b', '{"a":1,"b":2}'::jsonb ?| ARRAY['x','b'], '{"a":1,"b":2}'::jsonb ?& ARRAY['a','x']
SELECT json_typeof('1'), json_typeof('"x"'), json_typeof('[1]'), json_typeof('{}'), json_typeof('null'), jsonb_typeof('true'), json_typeof('1.5')
SELECT json_array_length('[1,2,3]'), jsonb_array_length('[]')
SELECT json_extract_path_text('{"a":{"b":"x"}}', 'a', 'b'), json_extract_path('{"a":{"b":"x"}}', 'a'), jsonb_extract_path_text('{"a":[5,6]}', 'a', '1')
SELECT to_json('x'::text), to_json(1), to_jsonb(true), to_json(NULL::text)
SELECT request_params->>'tool' AS tool, count(*) FROM system.access.audit WHERE request_params->>'tool' IS NOT NULL GROUP BY 1 ORDER BY 1
SELECT event_id, request_params->'nested'->'deep'->'x'->>2 FROM system.access.audit WHERE request_params->'nested' IS NOT NULL ORDER BY event_id LIMIT 3
SELECT event_id, request_params#>>'{nested,deep,x,0}', request_params#>'{tags}' FROM system.access.audit WHERE request_params->>'tool' = 'search' ORDER BY event_id LIMIT 3
SELECT (request_params->>'arguments_size')::int + 1 FROM system.access.audit WHERE request_params->>'arguments_size' IS NOT NULL ORDER BY 1 LIMIT 5
SELECT sum((request_params->>'input_tokens')::int), avg((request_params->>'cost')::float8) FROM system.access.audit
SELECT identity_metadata->>'run_by', identity_metadata->>'run_as' FROM system.access.audit WHERE event_id = '00000000-0000-4000-8000-000000000004'
SELECT response->>'status_code', response->>'sql_state', count(*) FROM system.access.audit GROUP BY 1, 2 ORDER BY 1, 2
SELECT count(*) FROM system.access.audit WHERE request_params::jsonb ? 'statement'
SELECT count(*) FROM system.access.audit WHERE request_params::jsonb @> '{"ok":true}'
SELECT event_id FROM system.access.audit WHERE request_params->>'note' IS NULL AND request_params::jsonb ? 'note' ORDER BY event_id
SELECT json_typeof(request_params->'tags'), count(*) FROM system.access.audit GROUP BY 1 ORDER BY 1
SELECT 1->>'a'
SELECT '{"a":1}'::json = '{"a":1}'::json
SELECT '{"a":1}'::jsonb = '{"a":1}'::jsonb
SELECT json_build_object('a', 1, 'b', 'x'), jsonb_build_object('b', 2, 'a', NULL), json_build_array(1, 'a', NULL), to_json(ARRAY[1, 2])
SELECT '{"a": [1, 2]}'::json->'a', '{"a": [1, 2]}'::jsonb->'a', '{"a": {"b": 1}}'::json
SELECT request_params FROM system.access.audit WHERE event_id = '00000000-0000-4000-8000-000000000002'
SELECT request_params::jsonb FROM system.access.audit WHERE event_id = '00000000-0000-4000-8000-000000000002'
SELECT json_agg(service_name ORDER BY service_name) FROM (SELECT DISTINCT service_name FROM system.access.audit) s
SELECT jsonb_agg(DISTINCT decision) FROM system.access.audit
