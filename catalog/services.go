package catalog

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Model provider services and model services: their options, validated
// once here (CREATE and ALTER ... SET OPTIONS), and the routes the gateway
// resolves from them.
//
// A model service's destinations and fallbacks are stored by provider
// service ID (Options[OptDestinations] is JSON: [{"provider":12,
// "model":"gpt-4.1","weight":80}]), so renaming a provider service, its
// schema or its catalog keeps the routes; SHOW and DESCRIBE render them
// with the current names (Model.RouteText). A provider service a model
// service routes to cannot be dropped (CodeDependent).
//
// The owner of a model service must hold EXECUTE on every provider
// service it routes to: checked when the service is created, when its
// destinations change and when its ownership is transferred. When that
// EXECUTE is revoked later (or the provider service is gone), the
// gateway fails closed for that destination: Model.ModelRoutes marks it
// Denied, the resolvers leave it out, and a service left without a
// usable primary destination does not resolve at all.

// Option names of model provider services.
const (
	OptProvider = "provider"
	OptAPIKey   = "api_key"
	OptPrices   = "prices"
	// OptToolPrices prices the server tools the provider bills per use
	// (ParseToolPrices).
	OptToolPrices = "tool_prices"
)

// Option names of model services (and the guardrail tags, which
// connections take too).
const (
	OptDestinations  = "destinations"
	OptFallbacks     = "fallbacks"
	OptTimeout       = "timeout"
	OptTags          = "tags"
	OptLogPayloads   = "log_payloads"
	OptSampleRate    = "sample_rate"
	OptTracePayloads = "trace_payloads"
	OptSensitivity   = "sensitivity"
	OptEgress        = "egress"
)

// Providers are the accepted values of a provider service's provider
// option, with their default API base URLs ("" = url is required).
var providers = map[string]string{
	"openai":            "https://api.openai.com/v1",
	"anthropic":         "https://api.anthropic.com/v1",
	"openai_compatible": "",
}

// providerOptions lists the options of a provider service and whether
// each is secret.
var providerOptions = map[string]bool{OptProvider: false, OptURL: false, OptAPIKey: true, OptPrices: false,
	OptToolPrices: false}

// modelServiceOptions lists the options of a model service (none secret).
var modelServiceOptions = map[string]bool{OptDestinations: false, OptFallbacks: false, OptTimeout: false, OptTags: false,
	OptLogPayloads: false, OptSampleRate: false, OptTracePayloads: false, OptSensitivity: false, OptEgress: false}

// Bounds of model service options.
const (
	MaxDestinations   = 32 // destinations plus fallbacks of one service
	MaxPricedModels   = 1000
	MaxServiceTags    = 16
	MaxTagKey         = 64
	MaxTagValue       = 256
	MinServiceTimeout = time.Second
	MaxServiceTimeout = time.Hour
	maxModelName      = 256
	maxAPIKey         = 8192
)

// Price is what one model costs in USD per million tokens of each class.
// CachedInput and CacheWrite are nil when the prices option does not give
// them (they then cost as much as input).
type Price struct {
	Input, Output           float64
	CachedInput, CacheWrite *float64
	// CacheWrite1h is the price of cache writes with Anthropic's 1-hour
	// TTL (CacheWrite is the 5-minute one); nil when not given: then
	// twice the input price, Anthropic's published rule.
	CacheWrite1h *float64
}

// pricesForm is the form of a prices entry, for the errors.
const pricesForm = "input/output[/cached_input[/cache_write[/cache_write_1h]]] in USD per million tokens"

// ParsePrices parses a prices option: "model=input/output[/cached_input
// [/cache_write[/cache_write_1h]]], ..." in USD per million tokens
// (non-negative decimal numbers). Model names may hold any character but
// white space, ',' and '='; a model may be listed once.
func ParsePrices(s string) (map[string]Price, error) {
	out := map[string]Price{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		model, spec, ok := strings.Cut(item, "=")
		model = strings.TrimSpace(model)
		if !ok || model == "" {
			return nil, Errorf(CodeInvalidArgument, "invalid prices entry %q: want model=%s", item, pricesForm)
		}
		if err := validModelName(model); err != nil {
			return nil, err
		}
		if _, dup := out[model]; dup {
			return nil, Errorf(CodeInvalidArgument, "prices: model %q is listed more than once", model)
		}
		parts := strings.Split(strings.TrimSpace(spec), "/")
		if len(parts) < 2 || len(parts) > 5 {
			return nil, Errorf(CodeInvalidArgument, "invalid prices entry %q: want %s", item, pricesForm)
		}
		var v [5]float64
		for i, p := range parts {
			f, err := parseUSD(strings.TrimSpace(p))
			if err != nil {
				return nil, Errorf(CodeInvalidArgument, "invalid price %q for model %q: %v", p, model, err)
			}
			v[i] = f
		}
		pr := Price{Input: v[0], Output: v[1]}
		if len(parts) > 2 {
			pr.CachedInput = &v[2]
		}
		if len(parts) > 3 {
			pr.CacheWrite = &v[3]
		}
		if len(parts) > 4 {
			pr.CacheWrite1h = &v[4]
		}
		out[model] = pr
		if len(out) > MaxPricedModels {
			return nil, Errorf(CodeInvalidArgument, "prices: more than %d models", MaxPricedModels)
		}
	}
	return out, nil
}

// ToolKind is a kind of provider-run tool that the provider bills per use
// on top of tokens and that a tool_prices option can price: web search
// (Anthropic's web_search_* tools, counted in usage.server_tool_use;
// the Responses API's web_search and web_search_preview, one
// web_search_call output item per use; chat completions'
// web_search_options, one search per choice) and file search (the
// Responses API's file_search, one file_search_call item per use). Tools
// billed otherwise (code execution by container time, image generation by
// image tokens) have no kind: a budget cannot bound them.
type ToolKind uint8

const (
	ToolWebSearch ToolKind = iota
	ToolFileSearch
	// NumToolKinds is the number of kinds (arrays indexed by ToolKind).
	NumToolKinds
)

// String is the kind's name in a tool_prices option.
func (k ToolKind) String() string {
	switch k {
	case ToolWebSearch:
		return "web_search"
	case ToolFileSearch:
		return "file_search"
	}
	return "unknown"
}

// ToolPrices are USD per 1,000 uses by tool kind; Set says which kinds
// the option prices (a kind not set has no price).
type ToolPrices struct {
	PerThousand [NumToolKinds]float64
	Set         [NumToolKinds]bool
}

// ParseToolPrices parses a tool_prices option: "kind=usd, ..." in USD per
// 1,000 uses of each tool kind (ToolKind: web_search, file_search), for
// every model of the provider service. Each kind may be listed once.
func ParseToolPrices(s string) (ToolPrices, error) {
	var out ToolPrices
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	if len(s) > maxToolPrices {
		return out, Errorf(CodeInvalidArgument, "option %q longer than %d bytes", OptToolPrices, maxToolPrices)
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		name, spec, ok := strings.Cut(item, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" {
			return out, Errorf(CodeInvalidArgument, "invalid tool_prices entry %q: want tool=price in USD per 1,000 uses", item).
				WithHint("tools: " + toolKindNames())
		}
		k := ToolKind(0)
		for k < NumToolKinds && k.String() != name {
			k++
		}
		if k == NumToolKinds {
			return out, Errorf(CodeInvalidArgument, "tool_prices: unknown tool %q", name).
				WithHint("tools billed per use that can be priced: " + toolKindNames() + " (code execution and image generation are not billed per use and cannot be)")
		}
		if out.Set[k] {
			return out, Errorf(CodeInvalidArgument, "tool_prices: tool %q is listed more than once", name)
		}
		f, err := parseUSD(strings.TrimSpace(spec))
		if err != nil {
			return out, Errorf(CodeInvalidArgument, "invalid price %q for tool %q: %v", strings.TrimSpace(spec), name, err)
		}
		out.PerThousand[k], out.Set[k] = f, true
	}
	return out, nil
}

// maxToolPrices bounds a tool_prices option's length (every kind listed
// with its largest price fits many times over).
const maxToolPrices = 1024

func toolKindNames() string {
	names := make([]string, NumToolKinds)
	for k := range NumToolKinds {
		names[k] = k.String()
	}
	return strings.Join(names, ", ")
}

// FormatToolPrices renders tool prices canonically (kinds in ToolKind
// order, numbers as short as they read back).
func FormatToolPrices(p ToolPrices) string {
	var parts []string
	for k := range NumToolKinds {
		if p.Set[k] {
			parts = append(parts, k.String()+"="+strconv.FormatFloat(p.PerThousand[k], 'f', -1, 64))
		}
	}
	return strings.Join(parts, ", ")
}

// parseUSD parses a non-negative decimal amount (digits with at most one
// '.', at most 9 decimal places, below one million).
func parseUSD(s string) (float64, error) {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || (dot && frac == "") || len(frac) > 9 || len(whole) > 6 {
		return 0, fmt.Errorf("want a non-negative decimal number (at most 6 digits before and 9 after the point)")
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("want a non-negative decimal number")
		}
	}
	return strconv.ParseFloat(s, 64)
}

// FormatPrices renders prices canonically (sorted by model, numbers as
// short as they read back).
func FormatPrices(p map[string]Price) string {
	models := make([]string, 0, len(p))
	for m := range p {
		models = append(models, m)
	}
	sort.Strings(models)
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	parts := make([]string, len(models))
	for i, m := range models {
		pr := p[m]
		s := m + "=" + f(pr.Input) + "/" + f(pr.Output)
		if pr.CachedInput != nil {
			s += "/" + f(*pr.CachedInput)
			if pr.CacheWrite != nil {
				s += "/" + f(*pr.CacheWrite)
				if pr.CacheWrite1h != nil {
					s += "/" + f(*pr.CacheWrite1h)
				}
			}
		}
		parts[i] = s
	}
	return strings.Join(parts, ", ")
}

func validModelName(m string) error {
	if m == "" || len(m) > maxModelName {
		return Errorf(CodeInvalidArgument, "invalid model name %q: 1 to %d bytes", m, maxModelName)
	}
	for _, r := range m {
		if r <= ' ' || r == ',' || r == '=' || r == 0x7f || r == '\uFFFD' {
			return Errorf(CodeInvalidArgument, "invalid model name %q: no white space, control characters, ',' or '='", m)
		}
	}
	return nil
}

// checkProviderURL is the connection URL rule (absolute, no credentials)
// tightened for provider services, which receive the provider API key:
// https, or http only to a loopback host (a local model server).
func checkProviderURL(k, v string) error {
	if err := validateOption(OptURL, v); err != nil {
		return err
	}
	u, _ := url.Parse(v)
	if u.Fragment != "" {
		return Errorf(CodeInvalidArgument, "option %q must not have a fragment", k)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return Errorf(CodeInvalidArgument, "option %q must use https (http only to a loopback host such as 127.0.0.1): the provider's API key travels on it", k)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitOptions checks option names against known (name → secret), refuses
// duplicates and NUL bytes, and splits plain from secret values. kind
// names the object in messages.
func splitOptions(kind string, known map[string]bool, opts [][2]string) (plain, secret map[string]string, err error) {
	plain, secret = map[string]string{}, map[string]string{}
	for _, kv := range opts {
		k, v := strings.ToLower(kv[0]), kv[1]
		isSecret, ok := known[k]
		if !ok {
			names := make([]string, 0, len(known))
			for n := range known {
				names = append(names, n)
			}
			sort.Strings(names)
			hint := "valid options: " + strings.Join(names, ", ")
			for _, n := range names {
				if osaWithin(k, n, 2) {
					hint = fmt.Sprintf("did you mean %q? ", n) + hint
					break
				}
			}
			return nil, nil, Errorf(CodeInvalidArgument, "unknown %s option %q", kind, kv[0]).WithHint(hint)
		}
		if _, dup := plain[k]; dup {
			return nil, nil, Errorf(CodeInvalidArgument, "option %q specified more than once", k)
		}
		if _, dup := secret[k]; dup {
			return nil, nil, Errorf(CodeInvalidArgument, "option %q specified more than once", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, nil, Errorf(CodeInvalidArgument, "option %q contains a NUL byte", k)
		}
		if isSecret {
			secret[k] = v
		} else {
			plain[k] = v
		}
	}
	return plain, secret, nil
}

// ValidateProviderOptions checks the options of a model provider service
// and splits them into plain and secret (api_key) options: provider is
// required (openai, anthropic, openai_compatible); url defaults to the
// provider's public API (required for openai_compatible); api_key is
// required but for openai_compatible (local servers need none); prices
// and tool_prices are validated and stored canonically.
func ValidateProviderOptions(opts [][2]string) (plain, secret map[string]string, err error) {
	plain, secret, err = splitOptions("model provider service", providerOptions, opts)
	if err != nil {
		return nil, nil, err
	}
	prov := strings.ToLower(strings.TrimSpace(plain[OptProvider]))
	def, ok := providers[prov]
	if !ok {
		names := make([]string, 0, len(providers))
		for n := range providers {
			names = append(names, n)
		}
		sort.Strings(names)
		if prov == "" {
			return nil, nil, Errorf(CodeInvalidArgument, "model provider service option %q is required", OptProvider).WithHint("providers: " + strings.Join(names, ", "))
		}
		return nil, nil, Errorf(CodeInvalidArgument, "unknown provider %q", plain[OptProvider]).WithHint("providers: " + strings.Join(names, ", "))
	}
	plain[OptProvider] = prov
	if u, ok := plain[OptURL]; ok {
		if err := checkProviderURL(OptURL, u); err != nil {
			return nil, nil, err
		}
	} else if def == "" {
		return nil, nil, Errorf(CodeInvalidArgument, "option %q is required for provider %q", OptURL, prov)
	} else {
		plain[OptURL] = def
	}
	if k, ok := secret[OptAPIKey]; ok {
		if k == "" || len(k) > maxAPIKey {
			return nil, nil, Errorf(CodeInvalidArgument, "option api_key must be 1 to %d bytes", maxAPIKey)
		}
		for _, r := range k {
			if r <= ' ' || r == 0x7f {
				return nil, nil, Errorf(CodeInvalidArgument, "option api_key must not contain white space or control characters")
			}
		}
	} else if prov != "openai_compatible" {
		return nil, nil, Errorf(CodeInvalidArgument, "option api_key is required for provider %q", prov)
	}
	if p, ok := plain[OptPrices]; ok {
		prices, err := ParsePrices(p)
		if err != nil {
			return nil, nil, err
		}
		plain[OptPrices] = FormatPrices(prices)
	}
	if p, ok := plain[OptToolPrices]; ok {
		tp, err := ParseToolPrices(p)
		if err != nil {
			return nil, nil, err
		}
		plain[OptToolPrices] = FormatToolPrices(tp)
	}
	return plain, secret, nil
}

// Route is one destination of a model service as stored: a provider
// service by ID, the model to ask there and its weight (0 for
// fallbacks).
type Route struct {
	Provider ID     `json:"provider"`
	Model    string `json:"model"`
	Weight   int    `json:"weight,omitempty"`
}

// RouteSpec is a destination as written in SQL: the provider service's
// name parts, the model and the weight (-1 when not given).
type RouteSpec struct {
	Provider []string
	Model    string
	Weight   int
}

// ParseRoutes parses a destinations or fallbacks option:
// "provider/model[=weight], ...". The provider service is a one-, two- or
// three-part name (resolved like a connection name: a one-part name is
// system.ai.<name>); the model is everything after the first '/' (model
// names may hold '/'); the weight, an integer 0..100, follows the last
// '=' (fallbacks take none).
func ParseRoutes(key, s string, weights bool) ([]RouteSpec, error) {
	var out []RouteSpec
	if strings.TrimSpace(s) == "" {
		return nil, Errorf(CodeInvalidArgument, "option %q must list at least one provider_service/model", key)
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		prov, rest, ok := cutUnquoted(item, '/')
		if !ok || strings.TrimSpace(prov) == "" || strings.TrimSpace(rest) == "" {
			return nil, Errorf(CodeInvalidArgument, "invalid %s entry %q: want provider_service/model%s", key, item, map[bool]string{true: "[=weight]"}[weights])
		}
		spec := RouteSpec{Weight: -1}
		model := strings.TrimSpace(rest)
		if i := strings.LastIndexByte(model, '='); i >= 0 {
			if !weights {
				return nil, Errorf(CodeInvalidArgument, "invalid %s entry %q: fallbacks take no weight", key, item)
			}
			w, err := strconv.Atoi(strings.TrimSpace(model[i+1:]))
			if err != nil || w < 0 || w > 100 {
				return nil, Errorf(CodeInvalidArgument, "invalid weight in %s entry %q: an integer from 0 to 100", key, item)
			}
			spec.Weight, model = w, strings.TrimSpace(model[:i])
		}
		if err := validModelName(model); err != nil {
			return nil, err
		}
		parts, err := SplitName(strings.TrimSpace(prov))
		if err != nil {
			return nil, Errorf(CodeInvalidArgument, "invalid provider service name in %s entry %q: %v", key, item, err)
		}
		spec.Provider, spec.Model = parts, model
		out = append(out, spec)
		if len(out) > MaxDestinations {
			return nil, Errorf(CodeInvalidArgument, "option %q lists more than %d destinations", key, MaxDestinations)
		}
	}
	if weights {
		sum, given := 0, 0
		for _, r := range out {
			if r.Weight >= 0 {
				sum += r.Weight
				given++
			}
		}
		switch {
		case given == 0 && len(out) == 1:
			out[0].Weight = 100
		case given != len(out):
			return nil, Errorf(CodeInvalidArgument, "option %q: give every destination a weight (they must sum to 100), or list a single destination", key)
		case sum != 100:
			return nil, Errorf(CodeInvalidArgument, "option %q: weights sum to %d, they must sum to 100", key, sum)
		}
	}
	return out, nil
}

// cutUnquoted cuts s at the first sep outside double quotes.
func cutUnquoted(s string, sep byte) (before, after string, found bool) {
	q := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			q = !q
		case s[i] == sep && !q:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// SplitName splits a dotted name into its identifiers: an identifier in
// double quotes may hold dots ("" is a quote inside it); unquoted ones
// are folded to lower case, as SQL folds them. At most three parts.
func SplitName(name string) ([]string, error) {
	parts, quoted, err := SplitNameQuoted(name)
	for i := range parts {
		if !quoted[i] {
			parts[i] = strings.ToLower(parts[i])
		}
	}
	return parts, err
}

// SplitNameQuoted splits a dotted name as SplitName does, with every
// identifier as written (unquoted ones not folded) and whether it was
// quoted.
func SplitNameQuoted(name string) (parts []string, quoted []bool, err error) {
	for i := 0; ; {
		var part strings.Builder
		q := i < len(name) && name[i] == '"'
		if q {
			i++
			for {
				j := strings.IndexByte(name[i:], '"')
				if j < 0 {
					return nil, nil, fmt.Errorf("unterminated quote")
				}
				part.WriteString(name[i : i+j])
				i += j + 1
				if i < len(name) && name[i] == '"' {
					part.WriteByte('"')
					i++
					continue
				}
				break
			}
		} else {
			j := strings.IndexAny(name[i:], `."`)
			if j < 0 {
				j = len(name) - i
			} else if name[i+j] == '"' {
				return nil, nil, fmt.Errorf("a quote inside an unquoted identifier")
			}
			part.WriteString(name[i : i+j])
			i += j
		}
		if part.Len() == 0 {
			return nil, nil, fmt.Errorf("empty identifier")
		}
		if parts, quoted = append(parts, part.String()), append(quoted, q); len(parts) > 3 {
			return nil, nil, fmt.Errorf("more than three parts")
		}
		if i == len(name) {
			return parts, quoted, nil
		}
		if name[i] != '.' {
			return nil, nil, fmt.Errorf("expected a dot after a quoted identifier")
		}
		i++
	}
}

// ParseServiceTags parses a tags option: a JSON object of strings
// ({"team": "payments"}) or a list k=v, k2=v2. At most MaxServiceTags
// keys of at most MaxTagKey bytes ([A-Za-z0-9_.:/-]), values at most
// MaxTagValue bytes.
func ParseServiceTags(s string) (map[string]string, error) {
	out := map[string]string{}
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "{") {
		var raw map[string]any
		if err := json.Unmarshal([]byte(t), &raw); err != nil {
			return nil, Errorf(CodeInvalidArgument, "option tags: invalid JSON object: %v", err)
		}
		for k, v := range raw {
			sv, ok := v.(string)
			if !ok {
				return nil, Errorf(CodeInvalidArgument, "option tags: the value of %q must be a string", k)
			}
			out[k] = sv
		}
	} else if t != "" {
		for _, item := range strings.Split(t, ",") {
			k, v, ok := strings.Cut(item, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok {
				return nil, Errorf(CodeInvalidArgument, "option tags: invalid entry %q: want key=value", strings.TrimSpace(item))
			}
			if _, dup := out[k]; dup {
				return nil, Errorf(CodeInvalidArgument, "option tags: key %q is given more than once", k)
			}
			out[k] = v
		}
	}
	if len(out) > MaxServiceTags {
		return nil, Errorf(CodeInvalidArgument, "option tags: at most %d keys", MaxServiceTags)
	}
	for k, v := range out {
		if err := ValidTag(k, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ValidTag checks one request tag: key 1..MaxTagKey bytes of
// [A-Za-z0-9_.:/-], value at most MaxTagValue bytes without control
// characters.
func ValidTag(k, v string) error {
	if k == "" || len(k) > MaxTagKey {
		return Errorf(CodeInvalidArgument, "invalid tag key %q: 1 to %d bytes", k, MaxTagKey)
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || r == '.' || r == ':' || r == '/' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return Errorf(CodeInvalidArgument, "invalid tag key %q: letters, digits and _ - . : / only", k)
		}
	}
	if len(v) > MaxTagValue {
		return Errorf(CodeInvalidArgument, "invalid value of tag %q: at most %d bytes", k, MaxTagValue)
	}
	for _, r := range v {
		if r < ' ' || r == 0x7f {
			return Errorf(CodeInvalidArgument, "invalid value of tag %q: no control characters", k)
		}
	}
	return nil
}

func canonicalTags(tags map[string]string) string {
	b, _ := json.Marshal(tags) // sorted keys
	return string(b)
}

func parseBoolOption(k, v string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "on", "yes", "1":
		return "true", nil
	case "false", "off", "no", "0":
		return "false", nil
	}
	return "", Errorf(CodeInvalidArgument, "option %q must be 'true' or 'false'", k)
}

// validateGuardrailTag checks the sensitivity and egress tags (model
// services and connections).
func validateGuardrailTag(k, v string) (string, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	switch k {
	case OptSensitivity:
		if v == "private" || v == "public" {
			return v, nil
		}
		return "", Errorf(CodeInvalidArgument, "option sensitivity must be 'private' or 'public'")
	case OptEgress:
		if v == "external" || v == "internal" {
			return v, nil
		}
		return "", Errorf(CodeInvalidArgument, "option egress must be 'external' or 'internal'")
	}
	return v, nil
}

// modelServiceSpec is a model service's validated options before its
// routes are resolved.
type modelServiceSpec struct {
	plain                   map[string]string
	destinations, fallbacks []RouteSpec
}

// validateModelServiceOptions checks everything of a model service's
// options that needs no catalog: the route syntax and weights, timeout,
// tags, payload logging, tracing and guardrail tags.
func validateModelServiceOptions(opts [][2]string) (*modelServiceSpec, error) {
	plain, _, err := splitOptions("model service", modelServiceOptions, opts)
	if err != nil {
		return nil, err
	}
	spec := &modelServiceSpec{plain: plain}
	d, ok := plain[OptDestinations]
	if !ok {
		return nil, Errorf(CodeInvalidArgument, "model service option %q is required", OptDestinations).
			WithHint("for example: destinations 'openai_prod/gpt-4.1=80, anthropic_prod/claude-sonnet-4-5=20'")
	}
	if spec.destinations, err = ParseRoutes(OptDestinations, d, true); err != nil {
		return nil, err
	}
	if f, ok := plain[OptFallbacks]; ok {
		if spec.fallbacks, err = ParseRoutes(OptFallbacks, f, false); err != nil {
			return nil, err
		}
		if len(spec.destinations)+len(spec.fallbacks) > MaxDestinations {
			return nil, Errorf(CodeInvalidArgument, "a model service routes to at most %d destinations and fallbacks", MaxDestinations)
		}
	}
	if t, ok := plain[OptTimeout]; ok {
		dur, err := time.ParseDuration(strings.TrimSpace(t))
		if err != nil || dur < MinServiceTimeout || dur > MaxServiceTimeout {
			return nil, Errorf(CodeInvalidArgument, "option timeout must be a duration from %s to %s, such as '120s' or '2m'", MinServiceTimeout, MaxServiceTimeout)
		}
		plain[OptTimeout] = dur.String()
	}
	if t, ok := plain[OptTags]; ok {
		tags, err := ParseServiceTags(t)
		if err != nil {
			return nil, err
		}
		plain[OptTags] = canonicalTags(tags)
	}
	for _, k := range []string{OptLogPayloads, OptTracePayloads} {
		if v, ok := plain[k]; ok {
			if plain[k], err = parseBoolOption(k, v); err != nil {
				return nil, err
			}
		}
	}
	if v, ok := plain[OptSampleRate]; ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
			return nil, Errorf(CodeInvalidArgument, "option sample_rate must be a number from 0 to 1")
		}
		plain[OptSampleRate] = strconv.FormatFloat(f, 'f', -1, 64)
	}
	for _, k := range []string{OptSensitivity, OptEgress} {
		if v, ok := plain[k]; ok {
			if plain[k], err = validateGuardrailTag(k, v); err != nil {
				return nil, err
			}
		}
	}
	return spec, nil
}

// resolveRoutes resolves the provider services of specs for a model
// service owned by owner, who must hold EXECUTE on each. what names the
// statement for messages.
func (m *Model) resolveRoutes(owner *Principal, specs []RouteSpec, what string) ([]Route, error) {
	out := make([]Route, 0, len(specs))
	for _, sp := range specs {
		path, err := ResolveName(TypeProviderService, sp.Provider, SystemCatalog)
		if err != nil {
			return nil, err
		}
		p, err := m.Lookup(TypeProviderService, path)
		if err != nil {
			return nil, err
		}
		if !m.Holds(owner.ID, PrivExecute, p.ID) {
			why := m.Check(owner.ID, PrivExecute, p.ID)
			msg := why.Reason()
			if miss := why.Missing(); miss != nil {
				msg = QuoteIdent(owner.Name) + " lacks " + miss.What()
			}
			return nil, Errorf(CodePermissionDenied, "permission denied to %s: its owner must hold EXECUTE on model provider service %s: %s", what, p.FullName(), msg)
		}
		w := sp.Weight
		if w < 0 {
			w = 0
		}
		out = append(out, Route{Provider: p.ID, Model: sp.Model, Weight: w})
	}
	return out, nil
}

func encodeRoutes(r []Route) string {
	b, _ := json.Marshal(r)
	return string(b)
}

// DecodeRoutes reads a model service's stored destinations or fallbacks
// option (nil for none or malformed).
func DecodeRoutes(s string) []Route {
	if s == "" {
		return nil
	}
	var r []Route
	if json.Unmarshal([]byte(s), &r) != nil {
		return nil
	}
	return r
}

// RouteText renders a model service's stored destinations or fallbacks
// as SQL spells them, with the provider services' current full names
// ("system.ai.openai_prod/gpt-4.1=80, ..."; a provider service that no
// longer exists is "#<id>").
func (m *Model) RouteText(stored string, weights bool) string {
	routes := DecodeRoutes(stored)
	parts := make([]string, len(routes))
	for i, r := range routes {
		name := "#" + strconv.FormatInt(int64(r.Provider), 10)
		if p, ok := m.securables[r.Provider]; ok {
			name = p.FullName()
		}
		parts[i] = name + "/" + r.Model
		if weights {
			parts[i] += "=" + strconv.Itoa(r.Weight)
		}
	}
	return strings.Join(parts, ", ")
}

// DisplayOptions returns a model service's or provider service's options
// as SHOW and DESCRIBE print them: routes with current names, URLs with
// any credentials masked. Secrets are not among them.
func (m *Model) DisplayOptions(s *Securable) map[string]string {
	out := make(map[string]string, len(s.Options))
	for k, v := range s.Options {
		switch k {
		case OptDestinations:
			v = m.RouteText(v, true)
		case OptFallbacks:
			v = m.RouteText(v, false)
		case OptURL:
			v = RedactURL(v)
		}
		out[k] = v
	}
	return out
}

// ResolvedRoute is one destination of a model service as the gateway
// resolves it: the provider service (nil when it no longer exists) and
// why the destination may not be used ("" when it may).
type ResolvedRoute struct {
	Route
	ProviderService *Securable
	Denied          string
}

// ModelRoutes returns the destinations and fallbacks of model service s
// for the gateway, each checked against the current catalog: a
// destination whose provider service is gone, or on which the service's
// owner no longer holds EXECUTE, is Denied (the gateway must not use it).
func (m *Model) ModelRoutes(s *Securable) (destinations, fallbacks []ResolvedRoute) {
	resolve := func(stored string) []ResolvedRoute {
		routes := DecodeRoutes(stored)
		out := make([]ResolvedRoute, len(routes))
		for i, r := range routes {
			out[i].Route = r
			p, ok := m.securables[r.Provider]
			switch {
			case !ok || p.Type != TypeProviderService:
				out[i].Denied = fmt.Sprintf("model provider service #%d no longer exists", r.Provider)
			case !m.Holds(s.Owner, PrivExecute, p.ID):
				out[i].ProviderService = p
				out[i].Denied = fmt.Sprintf("the owner of model service %s no longer holds EXECUTE on model provider service %s", s.FullName(), p.FullName())
			default:
				out[i].ProviderService = p
			}
		}
		return out
	}
	return resolve(s.Options[OptDestinations]), resolve(s.Options[OptFallbacks])
}

// routesTo reports the model services (other than those in skip) that
// route to provider service p.
func (m *Model) routesTo(p ID, skip map[ID]bool) []*Securable {
	var out []*Securable
	for _, s := range m.securables {
		if s.Type != TypeModelService || skip[s.ID] {
			continue
		}
		for _, k := range []string{OptDestinations, OptFallbacks} {
			found := false
			for _, r := range DecodeRoutes(s.Options[k]) {
				if r.Provider == p {
					found = true
				}
			}
			if found {
				out = append(out, s)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FullName() < out[j].FullName() })
	return out
}

// --- planning ---

// CreateProviderService creates a model provider service (path: catalog,
// schema, name) with validated options; api_key is sealed. Needs CREATE
// SERVICE on the schema (or inherited) plus USE_CATALOG and USE_SCHEMA.
func (tx *Tx) CreateProviderService(path []string, options [][2]string, ifNotExists bool, comment *string) error {
	return tx.createService(TypeProviderService, path, options, ifNotExists, comment)
}

// CreateModelService creates a model service with validated options. Needs
// CREATE SERVICE on the schema (or inherited) plus USE_CATALOG and
// USE_SCHEMA, and EXECUTE on every provider service it routes to (the
// caller becomes its owner).
func (tx *Tx) CreateModelService(path []string, options [][2]string, ifNotExists bool, comment *string) error {
	return tx.createService(TypeModelService, path, options, ifNotExists, comment)
}

func (tx *Tx) createService(typ SecurableType, path []string, options [][2]string, ifNotExists bool, comment *string) error {
	what := strings.ToLower(string(typ))
	tx.audit(typ, displayPath(path))
	if err := validObjectName(typ, path[2]); err != nil {
		return err
	}
	sch, err := tx.m.Lookup(TypeSchema, path[:2])
	if err != nil {
		return err
	}
	if err := tx.checkPriv(PrivCreateService, sch, "create "+what+" "+displayPath(path)); err != nil {
		return err
	}
	if _, ok := tx.m.Child(sch.ID, typ, path[2]); ok {
		if ifNotExists {
			return nil
		}
		return Errorf(CodeAlreadyExists, "%s %s already exists", what, displayPath(path))
	}
	id := tx.newID()
	plain, sealed, err := tx.serviceOptions(typ, id, tx.caller, options, "create "+what+" "+displayPath(path))
	if err != nil {
		return err
	}
	tx.do(opPutSecurable{&Securable{ID: id, Type: typ, Parent: sch.ID, Name: path[2], Owner: tx.caller.ID,
		Comment: deref(comment), Options: plain, Secrets: sealed, Created: tx.svc.now().UTC()}})
	return nil
}

// serviceOptions validates options of a service with id owned by owner
// and returns the stored options and sealed secrets.
func (tx *Tx) serviceOptions(typ SecurableType, id ID, owner *Principal, options [][2]string, what string) (map[string]string, []byte, error) {
	if typ == TypeProviderService {
		plain, secret, err := ValidateProviderOptions(options)
		if err != nil {
			return nil, nil, err
		}
		sealed, err := tx.svc.keyring.SealMap(secret, SecretsAAD(id))
		return plain, sealed, err
	}
	spec, err := validateModelServiceOptions(options)
	if err != nil {
		return nil, nil, err
	}
	dst, err := tx.m.resolveRoutes(owner, spec.destinations, what)
	if err != nil {
		return nil, nil, err
	}
	spec.plain[OptDestinations] = encodeRoutes(dst)
	if spec.fallbacks != nil {
		fb, err := tx.m.resolveRoutes(owner, spec.fallbacks, what)
		if err != nil {
			return nil, nil, err
		}
		spec.plain[OptFallbacks] = encodeRoutes(fb)
	}
	return spec.plain, nil, nil
}

// SetServiceOptions replaces the options of a model service or model
// provider service (ALTER ... SET OPTIONS replaces the whole list, as for
// connections). Needs the right to manage it; for a model service its
// owner must hold EXECUTE on the provider services of the new routes.
func (tx *Tx) SetServiceOptions(typ SecurableType, path []string, options [][2]string) error {
	what := strings.ToLower(string(typ))
	tx.audit(typ, displayPath(path))
	s, err := tx.m.Lookup(typ, path)
	if err != nil {
		return err
	}
	if err := tx.checkManage(s, "alter "+what+" "+s.FullName()); err != nil {
		return err
	}
	owner, ok := tx.m.Principal(s.Owner)
	if !ok {
		return Errorf(CodeNotFound, "the owner of %s %s does not exist", what, s.FullName())
	}
	plain, sealed, err := tx.serviceOptions(typ, s.ID, owner, options, "alter "+what+" "+s.FullName())
	if err != nil {
		return err
	}
	cp := *s
	cp.Options, cp.Secrets = plain, sealed
	tx.do(opPutSecurable{&cp})
	return nil
}

// checkOwnerRoutes checks that owner may own model service s: EXECUTE on
// every provider service it routes to (ALTER ... OWNER TO).
func (m *Model) checkOwnerRoutes(s *Securable, owner *Principal) error {
	dst, fb := m.ModelRoutes(s)
	for _, r := range append(dst, fb...) {
		if r.ProviderService == nil {
			continue
		}
		if !m.Holds(owner.ID, PrivExecute, r.ProviderService.ID) {
			return Errorf(CodePermissionDenied, "permission denied to change the owner of model service %s: the new owner %s lacks EXECUTE on model provider service %s, which the service routes to",
				s.FullName(), QuoteIdent(owner.Name), r.ProviderService.FullName())
		}
	}
	return nil
}

// checkDropProviders refuses to drop the tree under root when a model
// service outside it routes to a provider service inside it.
func (m *Model) checkDropProviders(root *Securable) error {
	inside := map[ID]bool{}
	var providers []*Securable
	var walk func(s *Securable)
	walk = func(s *Securable) {
		inside[s.ID] = true
		if s.Type == TypeProviderService {
			providers = append(providers, s)
		}
		for c := range m.childrenOf[s.ID] {
			walk(m.securables[c])
		}
	}
	walk(root)
	for _, p := range providers {
		if users := m.routesTo(p.ID, inside); len(users) > 0 {
			return Errorf(CodeDependent, "cannot drop model provider service %s because model service %s routes to it", p.FullName(), users[0].FullName()).
				WithHint("change the destinations and fallbacks of the model services that use it first (ALTER MODEL SERVICE ... SET OPTIONS)")
		}
	}
	return nil
}
