package injection

// The built-in phrase rules, by signal kind. Weights are the evidence one
// match gives on its own; see score.go for how they combine. The corpus
// test (testdata/guardrails/injection.jsonl) is the arbiter of changes.

const (
	kOverride   = "override"   // ignore/disregard previous instructions
	kRole       = "role"       // role switches and personas
	kMarker     = "marker"     // fake system/assistant/tool markers
	kAddressing = "addressing" // text that addresses the AI reading it
	kSecrecy    = "secrecy"    // hide actions from the user
	kTool       = "tool"       // requests to call tools or run commands
	kExfil      = "exfil"      // requests to send data somewhere
	kInvisible  = "invisible"  // tag characters, zero-width, bidi controls
	kHidden     = "hidden"     // instructions in comments, alt text, hidden elements
	kEncoded    = "encoded"    // instructions in base64, hex or tag characters
	kUrgency    = "urgency"    // urgency framing around instructions
)

const (
	verbsIgnore = "ignore|disregard|forget|skip|bypass|override|overlook|neglect|drop|abandon|dismiss|discard"
	verbsIntl   = "ignoriere|ignorieren|ignorez|ignorer|ignora|ignorar|ignorate|vergiss|vergessen|oublie|oubliez|olvida|olvide|dimentica"
	nounsInstr  = "instruct~|prompt~|rule|rules|direction~|guideline~|directive~|command~|constraint~|restriction~|polic~|guardrail~|safeguard~|programming|training|orders|context|task|tasks"
	nounsIntl   = "anweisung~|instruccion~|istruzion~|instruction~|regeln|regles|reglas|consigne~|vorgaben|indicacion~"
	qualStrong  = "previous|prior|preceding|above|earlier|original|initial|system|existing|foregoing"
	determiners = "all|any|every|your|each"
	aiNouns     = "ai|llm|llms|assistant|agent|chatbot|bot|model|claude|chatgpt|gpt|gemini|copilot|cursor|gpt4|agents|assistants"
	aiStrict    = "ai|llm|llms|assistant|chatbot|claude|chatgpt|gpt|gemini|copilot|cursor|gpt4|assistants"
	secretNouns = "password|passwords|passcode|credential~|key|keys|token|tokens|secret|secrets|cookie~|session~|ssh|history|conversation~|prompt|emails|messages|contacts|files|documents|data|contents|repository|repositories|env|environment|wallet|seed|mnemonic|otp|2fa|mfa|pin|inbox|calendar|notes"
	credNouns   = "password|passwords|passcode|credential~|token|tokens|otp|2fa|mfa|pin|code|codes|key|keys|secret|secrets|card"
	sendVerbs   = "send|forward|email|mail|post|upload|transmit|exfiltrate|leak|copy|share|submit|deliver|transfer|dump|paste|report|include|append|attach"
)

var builtinRules = []ruleDef{
	// instruction override
	{kOverride, 0.85, verbsIgnore + " " + determiners + " *3 " + nounsInstr},
	{kOverride, 0.85, verbsIgnore + " " + qualStrong + " *1 " + nounsInstr},
	{kOverride, 0.85, verbsIgnore + " " + determiners + " *1 " + qualStrong + " *2 " + nounsInstr},
	{kOverride, 0.45, verbsIgnore + " the|these|those|my|our|any *2 " + nounsInstr},
	{kOverride, 0.8, verbsIntl + " *3 " + nounsIntl},
	{kOverride, 0.4, verbsIgnore + " " + determiners + "|previous|prior|above *1 messages|emails|text|content|conversation|input|inputs|data|information"},
	{kOverride, 0.75, verbsIgnore + " ?the|all|everything above|foregoing|preceding|before and|instead|then|completely|entirely|now"},
	{kOverride, 0.75, verbsIgnore + " everything|all *2 above|before|previously|earlier|else"},
	{kOverride, 0.55, "ignore|disregard the|this document|page|article|text|website|file|email|content|ticket|task and|instead|completely"},
	{kOverride, 0.8, "forget everything|all *3 you|i *3 told|said|learned|were|been|taught"},
	{kOverride, 0.75, "your new|real|actual|true|updated|revised|only|primary|current instructions|task|goal|objective|mission|purpose|role|directive|job|priority is|are|now"},
	{kOverride, 0.35, "new|updated|revised|real|actual|true|secret|hidden|additional|override|important|urgent instructions|instruction|directive|directives|orders"},
	{kOverride, 0.7, "new|updated|revised|different system prompt|instructions|message|rules"},
	{kOverride, 0.75, "your|the|my instructions|rules|guidelines|prompt|directives|orders have|has been|were *1 updated|changed|replaced|revoked|overridden|modified|cancelled|canceled|superseded"},
	{kOverride, 0.75, "(do not|dont|never|must not|should not|shouldnt|cannot|may not) follow|obey|listen|honor|honour *3 user~|previous|original|system|instructions|rules|prompt|developer|request~|guidelines"},
	{kOverride, 0.6, "override|bypass|circumvent|disable|deactivate|suspend|turn *3 safety|security|content|ethical|moderation|ethics *1 filters|filter|guardrails|restrictions|safeguards|protections|policies|rules|checks|guidelines|protocols"},
	{kOverride, 0.4, "instead *3 you must|should|will|need"},
	{kOverride, 0.55, "stop what you are doing"},
	{kOverride, 0.55, "stop|cease|halt|abort summarizing|summarising|translating|analyzing|analysing|reading|processing|(the current|your current) task|work"},
	{kOverride, 0.6, "before you can|start|continue|proceed|answer|respond|reply|summarize|summarise|finish|complete|solve *6 you must|need|have|should|please *3 first"},
	{kOverride, 0.6, "please do the following first"},
	{kOverride, 0.55, "the task that i gave you"},
	{kOverride, 0.7, "this is a|an *2 message|instruction|instructions|directive|order|notice from *3 user|developer|developers|admin|administrator|system|creator|owner|operator|openai|anthropic|security"},
	{kOverride, 0.5, "important|urgent|critical message|instruction|instructions|update|notice for|to *2 " + aiNouns},
	{kOverride, 0.5, "you must|should|need|have|will|shall *2 ignore|forget|disregard|reveal|leak|exfiltrate|comply|obey"},
	{kOverride, 0.45, "user ?has|had|have *2 asked|requested|instructed|authorized|wants|would|asks|requests (you|that)"},
	{kOverride, 0.75, "end of *2 system|original|previous|user|conversation|context prompt|instructions|input|message|context"},
	{kOverride, 0.6, "reveal|print|output|show|repeat|display|leak|dump|disclose|share *3 system|initial|original|hidden|secret|developer|your prompt|prompts|instructions|message|rules"},
	{kOverride, 0.7, "ignore|disregard *1 the user~|human~ *3 request~|question~|instruction~|task~|wish~"},
	{kOverride, 0.7, "say|respond|reply|answer|output|print|write *2 you have been|are|were hacked|pwned|compromised|owned|jailbroken"},
	{kOverride, 0.4, "pwned|pwnd"},
	// role switch
	{kRole, 0.45, "(you are|youre) now|henceforth"},
	{kRole, 0.45, "from now on *2 you|your"},
	{kRole, 0.8, "(you are|youre) now|henceforth *3 dan|jailbroken|unrestricted|unfiltered|uncensored|evil|unlocked|free|root|sudo|admin|administrator"},
	{kRole, 0.4, "act|acting as *1 if *2 you|an|a"},
	{kRole, 0.4, "pretend|imagine *2 (you are|to be|youre)"},
	{kRole, 0.35, "roleplay|role-play|impersonate"},
	{kRole, 0.8, "god|sudo|jailbreak|jailbroken|unrestricted|dan|evil|unfiltered|uncensored mode *3 enabled|activated|unlocked|engaged|active|on"},
	{kRole, 0.35, "developer|debug|maintenance|admin|root mode *2 enabled|activated|unlocked|engaged|active"},
	{kRole, 0.7, "enter|enable|activate|switch|unlock|engage *2 god|sudo|jailbreak|unrestricted|dan|evil|unfiltered|uncensored mode"},
	{kRole, 0.75, "(no longer|not) *2 bound|restricted|limited|constrained by *3 rules|guidelines|policies|restrictions|instructions|ethics|openai|anthropic"},
	{kRole, 0.35, "jailbreak|jailbroken|jailbreaking"},
	{kRole, 0.6, "(you have been|you are|youre) now|finally|hereby|fully freed|liberated|unshackled|unchained|free"},
	{kRole, 0.5, "broken|break free of|from *3 confines|restrictions|rules|limits"},
	{kRole, 0.7, aiNouns + " *3 (without|with no|free of|free from) *2 restrictions|rules|guidelines|limits|filters|censorship|limitations|boundaries"},
	{kRole, 0.5, "never refuse|decline"},
	{kRole, 0.5, "never say no"},
	{kRole, 0.45, "answer|respond|reply *2 everything|anything"},
	// addressing the AI
	{kAddressing, 0.6, "if (you are|youre) an|a *2 " + aiNouns + "|language|automated|autonomous"},
	{kAddressing, 0.5, "dear|attention|hey|hello|hi|greetings *1 " + aiStrict},
	{kAddressing, 0.5, "note|notes|message|instructions|notice|reminder|memo to|for *2 " + aiStrict + "|agents"},
	{kAddressing, 0.6, aiNouns + " *2 reading|processing|summarizing|summarising|analyzing|analysing|parsing|viewing|browsing|handling *2 this|these"},
	{kAddressing, 0.55, "to any|all|the *2 " + aiNouns + " *3 reading|processing|that|who|handling"},
	{kAddressing, 0.45, "as|for an|the " + aiNouns + " *2 you must|should|are|will|need"},
	{kAddressing, 0.45, "language model|models reading|processing|summarizing"},
	{kAddressing, 0.45, "automated|autonomous agents|agent|systems|assistants|tools"},
	{kAddressing, 0.3, "ai *2 assistant|agent|bot|system|model"},
	// addressing the automated reader of the content by its job (added
	// after the first held-out set: generic forms, not its phrases)
	{kAddressing, 0.55, "when|once|if|whenever your|the|an|any " + aiNouns + "|llm *1 reads|processes|sees|summarizes|summarises|opens|parses|handles|gets this|these"},
	{kAddressing, 0.6, "instruction|instructions|note|notes|message|notice|memo|reminder|guidance to|for ?the processing|reading|parsing|summarizing|summarising|browsing|triage|reviewing|indexing|crawling|scraping *1 model|agent|bot|assistant|ai|llm"},
	{kAddressing, 0.45, "instruction|instructions|guidance|orders to|for ?the|any|all bot|bots|agent|agents|model|models"},
	{kAddressing, 0.4, "ai|llm|automated|autonomous|coding|code *1 reviewer|reviewers|assistant|assistants|agent|agents|notetaker|note|summarizer|summariser|triage|crawler|scraper|reader"},
	{kAddressing, 0.4, "hey|hi|hello|dear|attention|greetings bot|agent|model|llm"},
	{kAddressing, 0.5, "important|urgent|attention|critical|note for|to *2 " + aiStrict},
	{kOverride, 0.75, "previous|prior|earlier|old|original|above rules|instructions|guidelines|prompt|directions were|was *2 test|tests|mistake|wrong|fake|joke|outdated|obsolete|invalid|void|drill"},
	{kOverride, 0.45, "the|my real|actual|true rule|rules|instruction|instructions|directive|directives"},
	{kOverride, 0.45, "permitted|allowed|authorized|authorised|cleared|free to skip|bypass|ignore|disable|override|circumvent *3 safety|security|checks|review|reviews|guardrails|restrictions|approval|approvals"},
	{kOverride, 0.55, "skip|bypass|disable|ignore *2 safety|security checks|filters|scans|reviews|guardrails"},
	{kOverride, 0.45, "pre|already approved|authorized|authorised|cleared by *1 security|admin|administrator|management|legal|user|owner|it"},
	{kOverride, 0.45, "user ?has|had|have *1 approved|consented|agreed|permitted|allowed *2 this|that|to|it|earlier"},
	{kRole, 0.6, "now in *1 admin|administrator|god|root|sudo|unrestricted|jailbreak|privileged mode"},
	{kMarker, 0.5, "system note|notice|alert"},
	{kExfil, 0.55, "post|send|forward|share|copy|dump|paste|leak *1 ?the contents|content|messages|history|files|data of|from *4 private|internal|confidential|finance|hr|secret|payroll"},
	{kExfil, 0.5, "ask|request *3 me|user|customer|them|caller *2 for *2 card|pin|password|credentials|ssn|otp|passcode|cvv|cvc"},
	{kExfil, 0.4, "email|send|forward|post|share *3 notes|minutes|documents|files|records|summary *3 to the? whole|entire|all company|staff|everyone|organization|organisation|employees"},
	{kSecrecy, 0.35, "end|terminate|close the conversation|chat|session"},
	{kSecrecy, 0.4, "when|if the user~|customer~ asks|requests|mentions|says *5 tell|say|answer|respond|reply *1 them|that|with"},
	// secrecy
	{kSecrecy, 0.75, "(do not|dont|never) tell|inform|mention|reveal|show|alert|notify|let|disclose|warn *3 user|human|operator|admin|owner|developer|requester"},
	{kSecrecy, 0.3, "(do not|dont|never) tell|inform|mention|reveal|disclose *3 anyone|anybody|them"},
	{kSecrecy, 0.4, "(do not|dont|never) mention|reveal|disclose *2 it|this|that|these"},
	{kSecrecy, 0.5, "tell|inform *1 nobody|noone"},
	{kSecrecy, 0.55, "without telling|informing|notifying|alerting|asking|mentioning|letting|showing|warning *2 user|human|operator|anyone|requester|developer"},
	{kSecrecy, 0.6, "secretly|silently|covertly|quietly|discreetly|invisibly *2 " + sendVerbs + "|call|execute|run|add|invoke|delete|change|modify|grant|close"},
	{kSecrecy, 0.5, "close|delete|grant|approve|refund|transfer|send|forward|remove|add *5 silently|secretly|quietly|covertly"},
	{kSecrecy, 0.7, "keep|hide *3 secret|hidden|confidential|private from *2 user|human"},
	{kSecrecy, 0.6, "this|these instruction~|message~|text is|are *1 hidden|invisible|secret"},
	{kSecrecy, 0.5, "user *3 will|must|should|shall (never|not) *2 know|see|notice|find|learn"},
	{kSecrecy, 0.5, "before the user *1 reviews|sees|notices|reads|checks|approves"},
	{kSecrecy, 0.45, "(no need|without need|dont need|do not need) to confirm|ask|check|verify"},
	{kSecrecy, 0.4, "without *1 asking|confirmation|confirming|approval|review"},
	// tools
	{kTool, 0.35, "call|invoke|use|execute|trigger|run|launch *2 $ident"},
	{kTool, 0.4, "call|invoke|use|using|execute|trigger the|a|your *2 tool|tools|function|functions|plugin|action|api"},
	{kTool, 0.45, "call|invoke|use|using|execute|trigger *3 tool|function *3 to|and send|email|forward|post|upload|delete|transfer|create|write|read|fetch|open"},
	{kTool, 0.45, "immediately|now|first|automatically *2 call|invoke|execute|run|send|fetch|open|visit|navigate|add|buy|purchase|pay|checkout|transfer|delete|approve|accept|grant"},
	{kTool, 0.5, "visit|open|fetch|navigate|browse|go|load *2 $link *3 and|then *3 follow|execute|do|read|obey"},
	{kTool, 0.3, "curl|wget *5 sh|bash|python"},
	// exfiltration
	{kExfil, 0.85, sendVerbs + " *6 " + secretNouns + " *6 to|at|into|via|using *3 $link"},
	{kExfil, 0.85, sendVerbs + " *2 $link *6 " + secretNouns},
	{kExfil, 0.55, sendVerbs + " *6 " + secretNouns + " *4 to|at *2 me|us|attacker|address|server|endpoint|url|webhook"},
	{kExfil, 0.4, sendVerbs + " *6 to *2 $link"},
	{kExfil, 0.6, "append|add|include|embed|insert|encode|put|concatenate *5 to|in|into|as *3 url|link|image|query|parameter|markdown|path"},
	{kExfil, 0.55, "render|display|show|output|print|include *3 markdown|image *8 $link"},
	{kExfil, 0.45, "exfiltrate|exfiltrating|exfiltration"},
	{kExfil, 0.5, "base64|hex|rot13 encode|encoded *4 " + secretNouns},
	{kExfil, 0.7, "open|visit|load|fetch|call|navigate|go *2 $link *4 with|including|containing|and *3 " + credNouns + "|session"},
	{kExfil, 0.6, "reply|respond|answer|write *6 with|including|containing *4 " + credNouns},
	{kExfil, 0.5, "ask|request *3 their|users *2 card|password|credentials|ssn|pin|otp|passcode"},
	// markers that are word sequences
	{kMarker, 0.7, "system override"},
	{kMarker, 0.6, "admin override"},
	{kMarker, 0.7, "new system prompt"},
	{kMarker, 0.5, "assistant to itself"},
	// urgency
	{kUrgency, 0.25, "important|urgent|critical|mandatory|required|attention"},
}
