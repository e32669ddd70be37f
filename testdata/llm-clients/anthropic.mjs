// The official Anthropic SDK against Mandate's LLM endpoint: a message, a
// stream, a tool use and its result, count_tokens. Reads MANDATE_LLM_BASE
// (…/llm), MANDATE_TOKEN (sent as x-api-key) and MANDATE_MODEL; prints one
// line per check for the Go test to compare.
import Anthropic from '@anthropic-ai/sdk';

const client = new Anthropic({ baseURL: process.env.MANDATE_LLM_BASE, apiKey: process.env.MANDATE_TOKEN, maxRetries: 0 });
const model = process.env.MANDATE_MODEL;
const out = (...a) => console.log('anthropic', ...a);

const msg = await client.messages.create({ model, max_tokens: 64, system: 'Be brief.',
  messages: [{ role: 'user', content: 'hello from node' }] });
out('message', JSON.stringify(msg.content[0].text), msg.stop_reason, msg.usage.input_tokens > 0);

const stream = client.messages.stream({ model, max_tokens: 200,
  messages: [{ role: 'user', content: 'stream a longer answer from node' }] });
let events = 0;
stream.on('streamEvent', () => { events++; });
const final = await stream.finalMessage();
out('stream', JSON.stringify(final.content[0].text), events > 3, final.usage.output_tokens > 0);

const tools = [{ name: 'get_weather', description: 'Current weather of a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
const first = await client.messages.create({ model, max_tokens: 100, tools,
  messages: [{ role: 'user', content: 'call get_weather for Paris' }] });
const use = first.content.find((b) => b.type === 'tool_use');
out('tool_use', first.stop_reason, use.name, JSON.stringify(use.input));
const second = await client.messages.create({ model, max_tokens: 100, tools, messages: [
  { role: 'user', content: 'call get_weather for Paris' },
  { role: 'assistant', content: first.content },
  { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 21 C' }] },
] });
out('tool_result', JSON.stringify(second.content[0].text));

const count = await client.messages.countTokens({ model, messages: [{ role: 'user', content: 'count these tokens' }] });
out('count_tokens', count.input_tokens > 0);

try {
  await client.messages.create({ model: 'no_such_service', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
  out('unknown', 'accepted');
} catch (e) {
  out('unknown', e.status, e.error?.error?.type);
}
