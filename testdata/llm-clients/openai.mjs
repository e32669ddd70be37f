// The official OpenAI SDK against Mandate's LLM endpoint: chat, a stream,
// a tool call and its result, embeddings, the Responses API, the models
// list. Reads MANDATE_LLM_URL (…/llm/v1), MANDATE_TOKEN and MANDATE_MODEL;
// prints one line per check for the Go test to compare.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.MANDATE_LLM_URL, apiKey: process.env.MANDATE_TOKEN, maxRetries: 0 });
const model = process.env.MANDATE_MODEL;
const out = (...a) => console.log('openai', ...a);

const chat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello from node' }], max_tokens: 64 });
out('chat', JSON.stringify(chat.choices[0].message.content), chat.usage.prompt_tokens > 0);

const stream = await client.chat.completions.create({
  model, stream: true, stream_options: { include_usage: true },
  messages: [{ role: 'user', content: 'stream a longer answer from node' }],
});
let text = '', chunks = 0, usage = null;
for await (const ch of stream) {
  chunks++;
  if (ch.choices.length > 0) text += ch.choices[0].delta.content ?? '';
  if (ch.usage) usage = ch.usage;
}
out('stream', JSON.stringify(text), chunks > 3, usage !== null && usage.completion_tokens > 0);

const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Current weather of a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
const first = await client.chat.completions.create({ model, tools,
  messages: [{ role: 'user', content: 'call get_weather for Paris' }] });
const call = first.choices[0].message.tool_calls[0];
out('tool_call', first.choices[0].finish_reason, call.function.name, call.function.arguments);
const second = await client.chat.completions.create({ model, tools, messages: [
  { role: 'user', content: 'call get_weather for Paris' },
  first.choices[0].message,
  { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' },
] });
out('tool_result', JSON.stringify(second.choices[0].message.content));

if (process.env.MANDATE_EMBEDDINGS !== 'off') {
  const emb = await client.embeddings.create({ model, input: ['one', 'two'] });
  out('embeddings', emb.data.length, emb.data[0].embedding.length > 0);
  const resp = await client.responses.create({ model, input: 'hello responses' });
  out('responses', JSON.stringify(resp.output_text));
}

const models = [];
for await (const m of client.models.list()) models.push(m.id);
out('models', models.sort().join(','));

try {
  await client.chat.completions.create({ model: 'no_such_service', messages: [{ role: 'user', content: 'x' }] });
  out('unknown', 'accepted');
} catch (e) {
  out('unknown', e.status, e.code);
}
