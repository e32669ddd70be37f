package telemetry

// ExportHeaders are the headers sent with exports.
func (t *Telemetry) ExportHeaders() (map[string]string, error) { return t.headers() }

// LimitKind is the limit label of a KindLimited refusal.
var LimitKind = limitKind
