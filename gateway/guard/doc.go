// Package guard is the shared vocabulary of Mandate's built-in guardrails
// (system.ai.detect_sensitive_data, block_prompt_injection,
// prevent_exfiltration, validate_schema, pin_tools). The engines live in the
// sub-packages; they import only the standard library, this package and a
// few well-kept libraries, never the gateway's protocol handlers.
//
// Every guardrail follows the same life cycle ("prepare once, evaluate per
// request"):
//
//	Compile(options)   once per policy, when the catalog snapshot is built:
//	                   the policy's OPTIONS (map[string]string) are parsed
//	                   with Options, unknown or malformed options are an
//	                   *OptionError (reject the CREATE POLICY with it), and
//	                   the result is an immutable, concurrency-safe value
//	evaluate           per call or result, on content; no allocation when
//	                   nothing matches for the hot paths
//
// The packages:
//
//	sensitive  detect_sensitive_data: entity detection (EMAIL, PHONE,
//	           CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS, MAC_ADDRESS, CRYPTO,
//	           URL, SECRET and custom entities), masking with per-request
//	           placeholders and their restoration, JSON and streams
//	injection  block_prompt_injection: a heuristic score in [0, 1], an
//	           optional Classifier (a model service) and spotlighting
//	exfil      prevent_exfiltration: URL extraction, domain allow-lists
//	           and the lethal-trifecta rule over a run (RunStore)
//	schema     validate_schema: bounded JSON Schema compilation (cached by
//	           hash) and validation of tool results and model answers
//	pin        pin_tools: canonical tool-definition hashes and their
//	           comparison against approved pins
//	builtin    the built-in names and one Check(name, options) for the
//	           SQL front end
//
// Findings never carry matched text: entity types, counts, byte ranges and
// rule names are safe to log and to put in the audit record.
package guard
