// Package sensitive is the detect_sensitive_data guardrail: entity
// detection, masking with per-request placeholders, restoration, JSON and
// streams.
//
// # Use
//
//	g, err := sensitive.Compile(policy.Options) // once, at snapshot build
//	mc := sensitive.NewMaskContext()           // once per request
//	o := g.Text(mc, guard.Call, prompt)        // or g.JSON for arguments
//	switch {
//	case o.Deny:          // action deny: refuse, naming the policy
//	case o.Content != nil: // action mask: forward o.Content instead
//	}
//	audit(o.Summary)       // entity types and counts, never the text
//	…
//	s := g.Stream(mc, guard.Result)  // a streamed answer: per text delta
//	out := s.Write(delta)            // release out now (may be empty)
//	out = s.Flush()                  // at the end of the stream
//	answer = g.RestoreText(mc, answer) // restore 'true': the caller's values back
//
// Options: entities 'EMAIL,PHONE,…' (default all built-in types), action
// 'mask' (default) | 'deny' | 'monitor', restore 'true', custom
// 'NAME=regexp, NAME2=regexp' (Go RE2 syntax, matches must stand as whole
// tokens), words 'NAME=word|other word, NAME2=…' (whole words and
// phrases, ASCII case-insensitive). Custom names are upper case; they are
// always on.
//
// # Entities
//
//	EMAIL        local@domain with a real TLD (not logo@2x.png, lodash@4.17.21)
//	PHONE        +CC international numbers (E.164 length, known country
//	             codes), North American (NPA) NXX-XXXX formats
//	CREDIT_CARD  13–19 digits, grouped or not, issuer prefix and length,
//	             Luhn
//	IBAN         per-country length, ISO 7064 mod 97, compact or in groups
//	             of four (spaces or dashes), upper or lower case
//	US_SSN       AAA-GG-SSSS (or spaces): area not 000/666/9xx, group not
//	             00, serial not 0000, no advertised numbers; 9 undashed
//	             digits only after "SSN"/"social security"
//	IP_ADDRESS   IPv4 (zero-padded accepted), IPv6 (compressed, embedded
//	             IPv4, at least one group: ::1 is reported)
//	MAC_ADDRESS  six hex pairs with ':' or '-', Cisco hhhh.hhhh.hhhh
//	CRYPTO       Bitcoin base58check (version 0x00/0x05 and double
//	             SHA-256), bech32 and bech32m (witness version and
//	             program length), Ethereum 0x+40 hex (EIP-55 checksum when
//	             mixed case)
//	URL          scheme://… for common schemes, www.… hosts
//	SECRET       AWS AKIA/ASIA ids, GitHub ghp_/gho_/ghu_/ghs_/ghr_ and
//	             npm_ (CRC32 checksum), github_pat_, GitLab glpat-, Slack
//	             xox?-, Stripe sk_live_/rk_live_, OpenAI sk-/sk-proj-/
//	             sk-svcacct-/sk-admin-, Anthropic sk-ant-, Google AIza, JWTs
//	             (a base64url JSON header with alg or typ), PEM private
//	             keys, URLs with a password, an API key or a token in the
//	             query, incoming-webhook URLs, and high-entropy values
//	             assigned to names like password, secret, token, api_key,
//	             authorization (the value only is reported)
//
// Findings carry the entity type, the rule that matched and a byte range;
// never the text. Finding.Checksummed tells which were confirmed by a
// checksum or a structure rather than by shape.
//
// # Design
//
// One pass over the content with a 256-entry table of trigger bytes; at a
// trigger, anchored validators look back (never past the previous finding)
// and forward. The same bytes are tried as a card before an SSN, an IP
// address or a phone number, and findings never overlap. Nothing is
// allocated when nothing is found. Custom expressions and word lists are
// extra passes, merged by position.
//
// Masking replaces each finding by <ENTITY_N>; the same value gets the
// same placeholder for the whole request (MaskContext). Values masked on
// the call are the caller's own and can be restored in the answer;
// values first seen on the result (a tool's data) are never restored. A
// context numbers at most MaxMaskValues distinct values.
//
// JSON is scanned value by value (escapes decoded, member names too); a
// string under a secret-looking member name is tested as a secret as a
// whole. Only the strings that change are re-encoded; a masked number
// becomes a string.
//
// A Stream holds back only the tail that could still become (part of) an
// entity: the last run of non-space bytes, digit groups before it (cards,
// IBANs and phone numbers are written with spaces), a key and separator
// waiting for its value, an unterminated PEM block; at most MaxHold bytes
// (a PEM block up to 16 KiB). Of the last run it holds only the part an
// entity still growing could have started in: the longest suffix of bytes
// built-in entities are made of (letters, digits, . _ % + - @ : / = ( )),
// so "Hello!" or "done;" goes out at once, while "Hello" (perhaps an
// e-mail's local part), an assignment's value, a secret-looking name and
// a URL wait for the next chunk (with custom entities, the whole run
// waits). Whatever the chunking, the released text is the masked whole
// text (a fuzz test and the corpus check this).
//
// # Known misses (measured on testdata/guardrails/sensitive*.jsonl)
//
// Obfuscated e-mails ("jane dot doe at example dot com") and e-mails with
// IP literals; national phone formats without a country code outside
// North America ("020 7946 0958") and 7-digit local numbers; phone-shaped
// part numbers are reported as PHONE (300-200-1000); a card split across
// lines; a MAC without separators; bare domains with a path
// (example.com/pricing); four-part version numbers are reported as IPv4;
// passwords in prose without an assignment ("my password is …");
// Litecoin and other chains (CRYPTO is Bitcoin and Ethereum).
package sensitive
