package catalog

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// Tx plans one catalog change. Its methods check privileges and existence
// against the Model (which already reflects the Tx's own earlier changes),
// apply ops to the Model and record them for the store and for undo.
type Tx struct {
	m       *Model
	svc     *Service
	name    string // caller name from the request
	caller  *Principal
	ops     []op
	undo    []op
	noAudit bool

	auditType, auditName string
}

// Model returns the model as changed so far by this transaction.
func (tx *Tx) Model() *Model { return tx.m }

// Caller returns the calling principal.
func (tx *Tx) Caller() *Principal { return tx.caller }

func (tx *Tx) resolveCaller() error {
	p, ok := tx.m.PrincipalByName(tx.callerName())
	if !ok {
		if tx.callerName() == AdminUser && tx.m.metastore == 0 {
			return nil // bootstrap
		}
		return Errorf(CodePermissionDenied, "principal %s does not exist", QuoteIdent(tx.callerName()))
	}
	tx.caller = p
	return nil
}

func (tx *Tx) do(o op) {
	tx.undo = append(tx.undo, o.apply(tx.m))
	tx.ops = append(tx.ops, o)
}

func (tx *Tx) newID() ID {
	id := tx.m.nextID
	tx.m.nextID++
	return id
}

func (tx *Tx) audit(t SecurableType, name string) { tx.auditType, tx.auditName = string(t), name }

// --- names ---

// ResolveName turns a 1..3 part name of a securable of type typ into its
// full path (catalog, schema, object), by the type's registry entry: a
// name with all its parts is taken as is; one part less resolves in the
// current catalog (a one-part schema name, a two-part connection name);
// a one-part name of a type with a Home resolves there (a one-part
// connection name means system.ai.<name>).
func ResolveName(typ SecurableType, parts []string, currentCatalog string) ([]string, error) {
	if typ == TypeMetastore {
		return nil, nil
	}
	ti, ok := typeRegistry[typ]
	d := 0
	if ok && ti.Named {
		d = ti.Depth()
	}
	if d == 0 {
		return nil, Errorf(CodeNotSupported, "securable type %s is not supported", typ)
	}
	n := len(parts)
	bad := func() error {
		return Errorf(CodeInvalidArgument, "invalid %s name %q: expected %s", strings.ToLower(string(typ)), strings.Join(parts, "."), ti.nameForm())
	}
	for _, p := range parts {
		if p == "" {
			return nil, Errorf(CodeInvalidArgument, "invalid %s name %q: expected %s", strings.ToLower(string(typ)), strings.Join(parts, "."), "non-empty identifiers")
		}
	}
	switch {
	case n == d:
		return parts, nil
	case n == d-1 && d >= 2:
		return append([]string{currentCatalog}, parts...), nil
	case n == 1 && len(ti.Home) == d-1:
		return append(append([]string(nil), ti.Home...), parts[0]), nil
	}
	return nil, bad()
}

// typeChain returns the types of a full name of type t, outermost first
// (catalog, schema, t), from the registry.
func typeChain(t SecurableType) []SecurableType {
	if c, ok := typeChains[t]; ok {
		return c
	}
	return buildTypeChain(t)
}

// typeChains holds typeChain of every registered type, computed once
// (Lookup resolves a name per statement). The slices are shared: read only.
var typeChains = func() map[SecurableType][]SecurableType {
	m := make(map[SecurableType][]SecurableType, len(typeRegistry))
	for t := range typeRegistry {
		c := buildTypeChain(t)
		m[t] = c[:len(c):len(c)]
	}
	return m
}()

func buildTypeChain(t SecurableType) []SecurableType {
	var out []SecurableType
	for ti := typeRegistry[t]; ti != nil && ti.Type != TypeMetastore; ti = typeRegistry[ti.Parent] {
		out = append([]SecurableType{ti.Type}, out...)
	}
	return out
}

// nameForm describes the accepted names of the type ("[catalog.]schema",
// "[[catalog.]schema.]connection").
func (ti *TypeInfo) nameForm() string {
	chain := typeChain(ti.Type)
	names := make([]string, len(chain))
	for i, t := range chain {
		names[i] = strings.ToLower(string(t))
	}
	optional := 0
	if len(names) >= 2 {
		optional = 1
		if len(ti.Home) == len(names)-1 {
			optional = len(names) - 1
		}
	}
	prefix := ""
	for i := 0; i < optional; i++ {
		prefix = "[" + prefix + names[i] + ".]"
	}
	return prefix + strings.Join(names[optional:], ".")
}

func displayPath(path []string) string {
	q := make([]string, len(path))
	for i, p := range path {
		q[i] = QuoteIdent(p)
	}
	return strings.Join(q, ".")
}

// Lookup finds a securable by type and full path (see ResolveName).
func (m *Model) Lookup(typ SecurableType, path []string) (*Securable, error) {
	if typ == TypeMetastore {
		return m.Metastore(), nil
	}
	cur := m.Metastore()
	if cur == nil {
		return nil, Errorf(CodeUnavailable, "catalog is not initialised")
	}
	types := typeChain(typ)
	if len(path) == 0 || len(path) != len(types) {
		return nil, Errorf(CodeInvalidArgument, "invalid name")
	}
	for i, name := range path {
		next, ok := m.Child(cur.ID, types[i], name)
		if !ok {
			what := strings.ToLower(string(types[i]))
			return nil, Errorf(CodeNotFound, "%s %s does not exist", what, displayPath(path[:i+1]))
		}
		cur = next
	}
	return cur, nil
}

// --- principals ---

func validName(kind, name string) error {
	if strings.TrimSpace(name) == "" {
		return Errorf(CodeInvalidArgument, "%s name must not be empty", kind)
	}
	if len(name) > 255 {
		return Errorf(CodeInvalidArgument, "%s name is longer than 255 bytes", kind)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return Errorf(CodeInvalidArgument, "%s name must not contain control characters", kind)
		}
	}
	return nil
}

// validPrincipalName checks a new principal's name: besides validName's
// rules, no white space at either end and no invisible formatting
// characters (zero-width spaces, bidirectional overrides), which would let
// a name look like another one in listings and audit records.
func validPrincipalName(kind, name string) error {
	if err := validName(kind, name); err != nil {
		return err
	}
	if strings.TrimFunc(name, unicode.IsSpace) != name {
		return Errorf(CodeInvalidName, "invalid %s name %s: a name must not begin or end with white space", kind, QuoteIdent(name))
	}
	for _, r := range name {
		if unicode.Is(unicode.Cf, r) || (unicode.IsSpace(r) && r != ' ') {
			return Errorf(CodeInvalidName, "invalid %s name %s: a name must not contain invisible characters or white space other than spaces (found %U)", kind, QuoteIdent(name), r)
		}
	}
	return nil
}

// FoldName is the form in which two principal names count as the same for
// the confusability check: case folded, surrounding white space removed,
// other white space as one space and invisible formatting characters
// dropped. Principal names are compared exactly everywhere else.
func FoldName(name string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.TrimFunc(name, unicode.IsSpace) {
		switch {
		case unicode.Is(unicode.Cf, r):
			continue
		case unicode.IsSpace(r):
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(unicode.ToLower(unicode.ToUpper(r)))
	}
	return b.String()
}

// countFolded adds d to the count of p's folded name (ok false: no p).
func (m *Model) countFolded(p *Principal, ok bool, d int) {
	if !ok || p == nil {
		return
	}
	if m.folded == nil {
		m.folded = map[string]int{}
	}
	k := FoldName(p.Name)
	if m.folded[k] += d; m.folded[k] <= 0 {
		delete(m.folded, k)
	}
}

// principalLike returns a principal whose name folds to the same as name
// (see FoldName), if any.
func (m *Model) principalLike(name string) (*Principal, bool) {
	k := FoldName(name)
	if m.folded[k] == 0 {
		return nil, false
	}
	for _, p := range m.principals { // only when there is one
		if FoldName(p.Name) == k {
			return p, true
		}
	}
	return nil, false
}

func (tx *Tx) requireAdmin(what string) error {
	if tx.caller == nil || !tx.m.IsAdmin(tx.caller.ID) {
		return Errorf(CodePermissionDenied, "permission denied to %s: %s is not a metastore admin", what, QuoteIdent(tx.callerName()))
	}
	return nil
}

func (tx *Tx) callerName() string { return tx.name }

// principal resolves a principal by name and (optionally) kind.
func (tx *Tx) principal(kind PrincipalKind, name string) (*Principal, error) {
	p, ok := tx.m.PrincipalByName(name)
	if !ok {
		what := "principal"
		if kind != "" {
			what = strings.ToLower(string(kind))
		}
		return nil, Errorf(CodeNotFound, "%s %s does not exist", what, QuoteIdent(name))
	}
	if kind != "" && p.Kind != kind {
		return nil, Errorf(CodeWrongObjectType, "%s is a %s, not a %s", QuoteIdent(name), strings.ToLower(string(p.Kind)), strings.ToLower(string(kind)))
	}
	return p, nil
}

// CreatePrincipal creates a user, group or service principal. verifier is
// the SCRAM verifier of its password (nil: none). Metastore admins only.
func (tx *Tx) CreatePrincipal(kind PrincipalKind, name string, verifier *string, ifNotExists bool) error {
	tx.auditType, tx.auditName = string(kind), name
	if err := validPrincipalName(strings.ToLower(string(kind)), name); err != nil {
		return err
	}
	if err := tx.requireAdmin("create " + strings.ToLower(string(kind))); err != nil {
		return err
	}
	if p, ok := tx.m.PrincipalByName(name); ok {
		if ifNotExists && p.Kind == kind {
			return nil
		}
		return Errorf(CodeAlreadyExists, "%s %s already exists", strings.ToLower(string(p.Kind)), QuoteIdent(name))
	}
	if p, ok := tx.m.principalLike(name); ok {
		return Errorf(CodeAlreadyExists, "%s %s conflicts with the existing %s %s", strings.ToLower(string(kind)), QuoteIdent(name),
			strings.ToLower(string(p.Kind)), QuoteIdent(p.Name)).
			WithDetail("principal names must differ in more than letter case, white space and invisible characters")
	}
	if verifier != nil && kind == KindGroup {
		return Errorf(CodeInvalidArgument, "groups cannot have a password")
	}
	p := &Principal{ID: tx.newID(), Name: name, Kind: kind, Created: tx.svc.now().UTC()}
	if verifier != nil {
		p.Password = *verifier
	}
	tx.do(opPutPrincipal{p})
	return nil
}

// DropPrincipal drops a principal with its grants and memberships. A
// principal that owns securables cannot be dropped.
func (tx *Tx) DropPrincipal(kind PrincipalKind, name string, ifExists bool) error {
	tx.auditType, tx.auditName = string(kind), name
	if err := tx.requireAdmin("drop " + strings.ToLower(string(kind))); err != nil {
		return err
	}
	p, err := tx.principal(kind, name)
	if err != nil {
		if ifExists && IsCode(err, CodeNotFound) {
			return nil
		}
		return err
	}
	if p.Builtin {
		return Errorf(CodeReadOnly, "%s %s is built in and cannot be dropped", strings.ToLower(string(kind)), QuoteIdent(name))
	}
	if p.ID == tx.caller.ID {
		return Errorf(CodeInvalidArgument, "you cannot drop yourself")
	}
	// Its access tokens (as user or agent), and the rate limits and
	// budgets that name it, go with it.
	tx.dropAttachmentsOf(p)
	var owned []string
	for _, s := range tx.m.securables {
		if s.Owner == p.ID && (!IsAttachment(s.Type) || s.Type == TypePolicy) {
			owned = append(owned, fmt.Sprintf("%s %s", strings.ToLower(string(s.Type)), s.FullName()))
		}
	}
	if len(owned) > 0 {
		sort.Strings(owned)
		more := ""
		if len(owned) > 5 {
			more = fmt.Sprintf(" and %d more", len(owned)-5)
			owned = owned[:5]
		}
		return Errorf(CodeDependent, "%s %s cannot be dropped because it owns %s%s", strings.ToLower(string(kind)), QuoteIdent(name), strings.Join(owned, ", "), more).
			WithHint("transfer ownership first with ALTER ... OWNER TO")
	}
	for s, set := range tx.m.grantsTo[p.ID] {
		for _, pr := range set.List() {
			tx.do(opRemoveGrant{GrantKey{s, p.ID, pr}})
		}
	}
	for g := range tx.m.memberOf[p.ID] {
		tx.do(opRemoveMember{Membership{Group: g, Member: p.ID}})
	}
	for mem := range tx.m.members[p.ID] {
		tx.do(opRemoveMember{Membership{Group: p.ID, Member: mem}})
	}
	tx.do(opDeletePrincipal{p.ID})
	return nil
}

// SetPassword sets or clears (nil) a user's or service principal's password
// verifier. Admins may change anyone's; others only their own.
func (tx *Tx) SetPassword(kind PrincipalKind, name string, verifier *string) error {
	tx.auditType, tx.auditName = string(kind), name
	p, err := tx.principal(kind, name)
	if err != nil {
		return err
	}
	if p.ID != tx.caller.ID {
		if err := tx.requireAdmin("change the password of " + QuoteIdent(name)); err != nil {
			return err
		}
	}
	if kind == KindGroup {
		return Errorf(CodeInvalidArgument, "groups cannot have a password")
	}
	cp := *p
	cp.Password = ""
	if verifier != nil {
		cp.Password = *verifier
	}
	tx.do(opPutPrincipal{&cp})
	return nil
}

// membership resolves the group and member of ALTER GROUP ADD/REMOVE.
func (tx *Tx) membership(group string, kind PrincipalKind, member string) (Membership, error) {
	tx.auditType, tx.auditName = string(KindGroup), group
	if err := tx.requireAdmin("change group membership"); err != nil {
		return Membership{}, err
	}
	g, err := tx.principal(KindGroup, group)
	if err != nil {
		return Membership{}, err
	}
	mem, err := tx.principal(kind, member)
	if err != nil {
		return Membership{}, err
	}
	if g.ID == tx.m.accountUsrs || mem.ID == tx.m.accountUsrs {
		return Membership{}, Errorf(CodeReadOnly, "membership of %s is implicit (every user and service principal belongs to it) and cannot be changed", QuoteIdent(AccountUsers))
	}
	return Membership{Group: g.ID, Member: mem.ID}, nil
}

// AddMember adds member (of kind) to group. Cycles are refused.
func (tx *Tx) AddMember(group string, kind PrincipalKind, member string) error {
	ms, err := tx.membership(group, kind, member)
	if err != nil || tx.m.IsMember(ms.Group, ms.Member) {
		return err
	}
	if tx.m.WouldCycle(ms.Group, ms.Member) {
		return Errorf(CodeCycle, "cannot add group %s to group %s: %s already contains %s, which would create a cycle",
			QuoteIdent(member), QuoteIdent(group), QuoteIdent(member), QuoteIdent(group))
	}
	tx.do(opAddMember{ms})
	return nil
}

// RemoveMember removes member from group (a missing membership is not an error).
func (tx *Tx) RemoveMember(group string, kind PrincipalKind, member string) error {
	ms, err := tx.membership(group, kind, member)
	if err != nil {
		return err
	}
	tx.do(opRemoveMember{ms})
	return nil
}

// --- securables ---

func (tx *Tx) checkPriv(priv Privilege, s *Securable, what string) error {
	if tx.m.Holds(tx.caller.ID, priv, s.ID) {
		return nil
	}
	d := tx.m.Check(tx.caller.ID, priv, s.ID)
	if miss := d.Missing(); miss != nil {
		return Errorf(CodePermissionDenied, "permission denied to %s: %s lacks %s", what, QuoteIdent(tx.caller.Name), miss.What())
	}
	return Errorf(CodePermissionDenied, "permission denied to %s: %s", what, d.Reason())
}

func (tx *Tx) checkManage(s *Securable, what string) error {
	return tx.m.checkManage(tx.caller.ID, s, what)
}

func (m *Model) checkManage(caller ID, s *Securable, what string) error {
	ok, why := m.CanManage(caller, s.ID)
	if ok {
		return nil
	}
	return Errorf(CodePermissionDenied, "permission denied to %s: %s", what, why)
}

func validObjectName(typ SecurableType, name string) error {
	return validName(strings.ToLower(string(typ)), name)
}

// CreateCatalog creates a catalog owned by the caller. Needs CREATE_CATALOG
// on the metastore.
func (tx *Tx) CreateCatalog(name string, ifNotExists bool, comment *string) error {
	tx.audit(TypeCatalog, QuoteIdent(name))
	if err := validObjectName(TypeCatalog, name); err != nil {
		return err
	}
	ms := tx.m.Metastore()
	if err := tx.checkPriv(PrivCreateCatalog, ms, "create catalog "+QuoteIdent(name)); err != nil {
		return err
	}
	if _, ok := tx.m.Child(ms.ID, TypeCatalog, name); ok {
		if ifNotExists {
			return nil
		}
		return Errorf(CodeAlreadyExists, "catalog %s already exists", QuoteIdent(name))
	}
	tx.do(opPutSecurable{&Securable{ID: tx.newID(), Type: TypeCatalog, Parent: ms.ID, Name: name, Owner: tx.caller.ID,
		Comment: deref(comment), Created: tx.svc.now().UTC()}})
	return nil
}

// CreateSchema creates a schema (path: catalog, schema). Needs CREATE_SCHEMA
// and USE_CATALOG on the catalog.
func (tx *Tx) CreateSchema(path []string, ifNotExists bool, comment *string) error {
	tx.audit(TypeSchema, displayPath(path))
	if err := validObjectName(TypeSchema, path[1]); err != nil {
		return err
	}
	cat, err := tx.m.Lookup(TypeCatalog, path[:1])
	if err != nil {
		return err
	}
	if err := tx.checkPriv(PrivCreateSchema, cat, "create schema "+displayPath(path)); err != nil {
		return err
	}
	if _, ok := tx.m.Child(cat.ID, TypeSchema, path[1]); ok {
		if ifNotExists {
			return nil
		}
		return Errorf(CodeAlreadyExists, "schema %s already exists", displayPath(path))
	}
	tx.do(opPutSecurable{&Securable{ID: tx.newID(), Type: TypeSchema, Parent: cat.ID, Name: path[1], Owner: tx.caller.ID,
		Comment: deref(comment), Created: tx.svc.now().UTC()}})
	return nil
}

// CreateConnection creates a connection (path: catalog, schema, name) with
// validated options; secrets are sealed. Needs CREATE_CONNECTION on the
// schema (or inherited) plus USE_CATALOG and USE_SCHEMA.
func (tx *Tx) CreateConnection(path []string, typ string, options [][2]string, ifNotExists bool, comment *string) error {
	tx.audit(TypeConnection, displayPath(path))
	if err := validObjectName(TypeConnection, path[2]); err != nil {
		return err
	}
	sch, err := tx.m.Lookup(TypeSchema, path[:2])
	if err != nil {
		return err
	}
	if err := tx.checkPriv(PrivCreateConnection, sch, "create connection "+displayPath(path)); err != nil {
		return err
	}
	if _, ok := tx.m.Child(sch.ID, TypeConnection, path[2]); ok {
		if ifNotExists {
			return nil
		}
		return Errorf(CodeAlreadyExists, "connection %s already exists", displayPath(path))
	}
	plain, secret, err := ValidateConnectionOptions(typ, options)
	if err != nil {
		return err
	}
	plain["type"] = strings.ToUpper(typ)
	id := tx.newID()
	sealed, err := tx.svc.keyring.SealMap(secret, SecretsAAD(id))
	if err != nil {
		return err
	}
	tx.do(opPutSecurable{&Securable{ID: id, Type: TypeConnection, Parent: sch.ID, Name: path[2], Owner: tx.caller.ID,
		Comment: deref(comment), Options: plain, Secrets: sealed, Created: tx.svc.now().UTC()}})
	return nil
}

// Drop drops a catalog, schema or connection. Containers must be empty
// unless cascade is set; then everything inside is dropped too. Needs
// ownership of it or a container, MANAGE, or metastore admin.
func (tx *Tx) Drop(typ SecurableType, path []string, ifExists, cascade bool) error {
	tx.audit(typ, displayPath(path))
	s, err := tx.m.Lookup(typ, path)
	if err != nil {
		if ifExists && IsCode(err, CodeNotFound) {
			return nil
		}
		return err
	}
	if s.Builtin {
		return Errorf(CodeReadOnly, "%s %s is built in and cannot be dropped", strings.ToLower(string(typ)), s.FullName())
	}
	if err := tx.checkManage(s, "drop "+strings.ToLower(string(typ))+" "+s.FullName()); err != nil {
		return err
	}
	n := 0 // policies, limits and tool pins are attachments, not contents: they go with the object
	for c := range tx.m.childrenOf[s.ID] {
		if !IsAttachment(tx.m.securables[c].Type) {
			n++
		}
	}
	if n > 0 && !cascade {
		what := "objects"
		if n == 1 {
			what = "object"
		}
		return Errorf(CodeDependent, "cannot drop %s %s because it is not empty (%d %s inside)", strings.ToLower(string(typ)), s.FullName(), n, what).
			WithHint("use DROP ... CASCADE to drop it with everything inside")
	}
	if err := tx.m.checkDropProviders(s); err != nil {
		return err
	}
	tx.dropTree(s)
	return nil
}

func (tx *Tx) dropTree(s *Securable) {
	for _, c := range tx.m.Children(s.ID) {
		tx.dropTree(c)
	}
	for p, set := range tx.m.grantsOn[s.ID] {
		for _, pr := range set.List() {
			tx.do(opRemoveGrant{GrantKey{s.ID, p, pr}})
		}
	}
	tx.do(opDeleteSecurable{s.ID})
}

// SetOwner transfers ownership.
func (tx *Tx) SetOwner(typ SecurableType, path []string, owner string) error {
	tx.audit(typ, displayPath(path))
	s, err := tx.m.Lookup(typ, path)
	if err != nil {
		return err
	}
	p, err := tx.principal("", owner)
	if err != nil {
		return err
	}
	if err := tx.checkManage(s, "change the owner of "+strings.ToLower(string(typ))+" "+s.FullName()); err != nil {
		return err
	}
	if s.Type == TypeModelService {
		if err := tx.m.checkOwnerRoutes(s, p); err != nil {
			return err
		}
	}
	cp := *s
	cp.Owner = p.ID
	tx.do(opPutSecurable{&cp})
	return nil
}

// Rename renames a catalog, schema or connection within its container.
func (tx *Tx) Rename(typ SecurableType, path []string, newName string) error {
	tx.audit(typ, displayPath(path))
	s, err := tx.m.Lookup(typ, path)
	if err != nil {
		return err
	}
	if s.Builtin {
		return Errorf(CodeReadOnly, "%s %s is built in and cannot be renamed", strings.ToLower(string(typ)), s.FullName())
	}
	if err := validObjectName(typ, newName); err != nil {
		return err
	}
	if err := tx.checkManage(s, "rename "+strings.ToLower(string(typ))+" "+s.FullName()); err != nil {
		return err
	}
	if _, ok := tx.m.Child(s.Parent, typ, newName); ok {
		return Errorf(CodeAlreadyExists, "%s %s already exists", strings.ToLower(string(typ)), displayPath(append(path[:len(path)-1:len(path)-1], newName)))
	}
	cp := *s
	cp.Name = newName
	tx.do(opPutSecurable{&cp})
	return nil
}

// SetOptions replaces a connection's options.
func (tx *Tx) SetOptions(path []string, options [][2]string) error {
	tx.audit(TypeConnection, displayPath(path))
	s, err := tx.m.Lookup(TypeConnection, path)
	if err != nil {
		return err
	}
	if err := tx.checkManage(s, "alter connection "+s.FullName()); err != nil {
		return err
	}
	plain, secret, err := ValidateConnectionOptions(s.Options["type"], options)
	if err != nil {
		return err
	}
	plain["type"] = s.Options["type"]
	sealed, err := tx.svc.keyring.SealMap(secret, SecretsAAD(s.ID))
	if err != nil {
		return err
	}
	cp := *s
	cp.Options, cp.Secrets = plain, sealed
	tx.do(opPutSecurable{&cp})
	return nil
}

// SetComment sets (or clears, nil) the comment of a securable.
func (tx *Tx) SetComment(typ SecurableType, path []string, comment *string) error {
	tx.audit(typ, displayPath(path))
	s, err := tx.m.Lookup(typ, path)
	if err != nil {
		return err
	}
	if err := tx.checkManage(s, "comment on "+strings.ToLower(string(typ))+" "+s.FullName()); err != nil {
		return err
	}
	cp := *s
	cp.Comment = deref(comment)
	tx.do(opPutSecurable{&cp})
	return nil
}

// --- policies ---

// PolicySourceOption is the option holding a policy's Rego source.
const PolicySourceOption = "source"

// Policies returns every policy sorted by name.
func (m *Model) Policies() []*Securable {
	var out []*Securable
	for _, s := range m.securables {
		if s.Type == TypePolicy {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// PolicyByName finds a policy (policy names are unique in the metastore).
func (m *Model) PolicyByName(name string) (*Securable, bool) {
	for _, s := range m.securables {
		if s.Type == TypePolicy && s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// PoliciesFor returns the policies that apply to securable s: those attached
// to it and to its containing schema and catalog, outermost first.
func (m *Model) PoliciesFor(s ID) []*Securable {
	sec, ok := m.securables[s]
	if !ok {
		return nil
	}
	anc := m.Ancestors(sec)
	var out []*Securable
	for i := len(anc) - 1; i >= 0; i-- {
		for _, c := range m.Children(anc[i].ID) {
			if c.Type == TypePolicy {
				out = append(out, c)
			}
		}
	}
	return out
}

// CreatePolicy attaches a policy (Rego source, validated by the caller) to a
// catalog, schema or connection. Needs the right to manage that securable.
// Callers compile the source outside the catalog's lock, and only once
// CheckCreatePolicy passed, so that nobody without the right to create the
// policy makes the server compile anything.
func (tx *Tx) CreatePolicy(name string, onType SecurableType, path []string, source string) error {
	return tx.CreatePolicyDef(name, onType, path, PolicyDef{Kind: PolicyKindRego, Call: true, Source: source})
}

// CheckCreatePolicy reports whether caller may create policy name on the
// securable (every check of CreatePolicy except compiling the source).
func (m *Model) CheckCreatePolicy(caller string, name string, onType SecurableType, path []string, source string) error {
	p, ok := m.PrincipalByName(caller)
	if !ok {
		return Errorf(CodePermissionDenied, "principal %s does not exist", QuoteIdent(caller))
	}
	if _, err := m.checkCreatePolicy(p, name, onType, path, source); err != nil {
		return err
	}
	if strings.TrimSpace(source) == "" {
		return Errorf(CodeInvalidArgument, "policy %s has no source", QuoteIdent(name))
	}
	return nil
}

func (m *Model) checkCreatePolicy(caller *Principal, name string, onType SecurableType, path []string, source string) (*Securable, error) {
	if err := validObjectName(TypePolicy, name); err != nil {
		return nil, err
	}
	if onType != TypeCatalog && onType != TypeSchema && onType != TypeConnection && onType != TypeModelService {
		return nil, Errorf(CodeNotSupported, "policies attach to a catalog, a schema, a connection or a model service")
	}
	on, err := m.Lookup(onType, path)
	if err != nil {
		return nil, err
	}
	if err := m.checkManage(caller.ID, on, "create a policy on "+strings.ToLower(string(on.Type))+" "+on.FullName()); err != nil {
		return nil, err
	}
	if _, ok := m.PolicyByName(name); ok {
		return nil, Errorf(CodeAlreadyExists, "policy %s already exists", QuoteIdent(name))
	}
	return on, nil
}

// DropPolicy drops a policy. Needs the right to manage what it is attached to.
func (tx *Tx) DropPolicy(name string, ifExists bool) error {
	tx.audit(TypePolicy, QuoteIdent(name))
	p, ok := tx.m.PolicyByName(name)
	if !ok {
		if ifExists {
			return nil
		}
		return Errorf(CodeNotFound, "policy %s does not exist", QuoteIdent(name))
	}
	on := tx.m.securables[p.Parent]
	if err := tx.checkManage(on, "drop policy "+QuoteIdent(name)); err != nil {
		return err
	}
	tx.dropTree(p)
	return nil
}

// --- grants ---

func (tx *Tx) grantTargets(privs []Privilege, typ SecurableType, path []string, principals []string, verb string) (*Securable, []*Principal, error) {
	tx.audit(typ, displayPath(path))
	s, err := tx.m.Lookup(typ, path)
	if err != nil {
		return nil, nil, err
	}
	if typ != TypeMetastore {
		tx.auditName = s.FullName()
	} else {
		tx.auditName = MetastoreName
	}
	ti, _ := LookupType(s.Type)
	for _, p := range privs {
		if !ti.Applies(p) {
			return nil, nil, Errorf(CodeInvalidPrivilege, "privilege %s does not apply to %s", p.SQL(), strings.ToLower(string(s.Type))).
				WithHint(fmt.Sprintf("privileges on a %s: %s", strings.ToLower(string(s.Type)), ti.PrivilegeNames()))
		}
	}
	ps := make([]*Principal, 0, len(principals))
	for _, n := range principals {
		p, err := tx.principal("", n)
		if err != nil {
			return nil, nil, err
		}
		ps = append(ps, p)
	}
	target := strings.ToLower(string(s.Type)) + " " + s.FullName()
	if s.Type == TypeMetastore {
		target = "the metastore"
	}
	if err := tx.checkManage(s, verb+" on "+target); err != nil {
		return nil, nil, err
	}
	return s, ps, nil
}

// Grant grants privileges on a securable to principals.
func (tx *Tx) Grant(privs []Privilege, typ SecurableType, path []string, principals []string) error {
	s, ps, err := tx.grantTargets(privs, typ, path, principals, "grant")
	if err != nil {
		return err
	}
	for _, p := range ps {
		for _, pr := range privs {
			if !tx.m.HasGrant(GrantKey{s.ID, p.ID, pr}) {
				tx.do(opAddGrant{Grant{Securable: s.ID, Principal: p.ID, Privilege: pr, Grantor: tx.caller.ID}})
			}
		}
	}
	return nil
}

// Revoke revokes privileges; revoking a grant that does not exist succeeds.
func (tx *Tx) Revoke(privs []Privilege, typ SecurableType, path []string, principals []string) error {
	s, ps, err := tx.grantTargets(privs, typ, path, principals, "revoke")
	if err != nil {
		return err
	}
	for _, p := range ps {
		for _, pr := range privs {
			if tx.m.HasGrant(GrantKey{s.ID, p.ID, pr}) {
				tx.do(opRemoveGrant{GrantKey{s.ID, p.ID, pr}})
			}
		}
	}
	return nil
}

// --- bootstrap ---

func (tx *Tx) bootstrap(adminVerifier string) error {
	now := tx.svc.now().UTC()
	admin := &Principal{ID: tx.newID(), Name: AdminUser, Kind: KindUser, Admin: true, Builtin: true, Password: adminVerifier, Created: now}
	tx.do(opPutPrincipal{admin})
	tx.caller = admin
	users := &Principal{ID: tx.newID(), Name: AccountUsers, Kind: KindGroup, Builtin: true, Created: now,
		Comment: "every user and service principal"}
	tx.do(opPutPrincipal{users})
	ms := &Securable{ID: tx.newID(), Type: TypeMetastore, Name: MetastoreName, Owner: admin.ID, Builtin: true, Created: now}
	tx.do(opPutSecurable{ms})
	sys := &Securable{ID: tx.newID(), Type: TypeCatalog, Parent: ms.ID, Name: SystemCatalog, Owner: admin.ID, Builtin: true, Created: now,
		Comment: "built-in catalog: AI connections, audit and information schema"}
	tx.do(opPutSecurable{sys})
	var ai *Securable
	for _, sc := range []struct{ name, comment string }{
		{"ai", "MCP connections and model endpoints"},
		{"access", "audit tables"},
		{"information_schema", "catalog metadata views"},
	} {
		s := &Securable{ID: tx.newID(), Type: TypeSchema, Parent: sys.ID, Name: sc.name, Owner: admin.ID, Builtin: true, Created: now, Comment: sc.comment}
		tx.do(opPutSecurable{s})
		if sc.name == "ai" {
			ai = s
		}
	}
	tx.do(opAddGrant{Grant{Securable: sys.ID, Principal: users.ID, Privilege: PrivUseCatalog, Grantor: admin.ID}})
	tx.do(opAddGrant{Grant{Securable: ai.ID, Principal: users.ID, Privilege: PrivUseSchema, Grantor: admin.ID}})
	return tx.addSystemTables()
}

// addSystemTables creates the built-in TABLE securables of SystemTables
// that are missing, owned by the built-in admin. When it creates the first
// ones it also grants "account users" USE_SCHEMA on system.access and
// system.information_schema and SELECT on system.information_schema (whose
// rows are filtered per caller): so SELECT on system.access.audit (or on
// its schema) is all a metastore admin grants to let others read the audit.
func (tx *Tx) addSystemTables() error {
	m := tx.m
	ms := m.Metastore()
	if ms == nil {
		return Errorf(CodeUnavailable, "catalog is not initialised")
	}
	sys, ok := m.Child(ms.ID, TypeCatalog, SystemCatalog)
	if !ok {
		return Errorf(CodeNotFound, "catalog %s does not exist", SystemCatalog)
	}
	admin, _ := m.PrincipalByName(AdminUser)
	users, _ := m.PrincipalByName(AccountUsers)
	if admin == nil || users == nil {
		return Errorf(CodeNotFound, "built-in principals are missing")
	}
	now := tx.svc.now().UTC()
	first := true
	for _, t := range SystemTables() {
		if _, ok := m.Child(sys.ID, TypeSchema, t.Schema); !ok {
			s := &Securable{ID: tx.newID(), Type: TypeSchema, Parent: sys.ID, Name: t.Schema, Owner: admin.ID, Builtin: true, Created: now,
				Comment: systemSchemaComments[t.Schema]}
			tx.do(opPutSecurable{s})
			if t.Schema == "ai_gateway" {
				// Like system.access: usable by everyone, readable where
				// SELECT is granted.
				tx.do(opAddGrant{Grant{Securable: s.ID, Principal: users.ID, Privilege: PrivUseSchema, Grantor: admin.ID}})
			}
		}
		sch, _ := m.Child(sys.ID, TypeSchema, t.Schema)
		if _, ok := m.Child(sch.ID, TypeTable, t.Name); ok {
			first = false
			continue
		}
		tx.do(opPutSecurable{&Securable{ID: tx.newID(), Type: TypeTable, Parent: sch.ID, Name: t.Name, Owner: admin.ID,
			Builtin: true, Created: now, Comment: t.Comment}})
	}
	if !first {
		return nil
	}
	for _, g := range []struct {
		schema string
		priv   Privilege
	}{{"access", PrivUseSchema}, {"information_schema", PrivUseSchema}, {"information_schema", PrivSelect}} {
		sch, ok := m.Child(sys.ID, TypeSchema, g.schema)
		if ok && !m.HasGrant(GrantKey{sch.ID, users.ID, g.priv}) {
			tx.do(opAddGrant{Grant{Securable: sch.ID, Principal: users.ID, Privilege: g.priv, Grantor: admin.ID}})
		}
	}
	return nil
}

// systemSchemaComments are the comments of the system schemas that
// addSystemTables creates.
var systemSchemaComments = map[string]string{"ai_gateway": "LLM usage and captured payloads"}

// missingSystemTables reports whether a built-in system table is missing
// (a catalog bootstrapped by an older Mandate).
func (m *Model) missingSystemTables() bool {
	ms := m.Metastore()
	if ms == nil {
		return false
	}
	sys, ok := m.Child(ms.ID, TypeCatalog, SystemCatalog)
	if !ok {
		return false
	}
	for _, t := range SystemTables() {
		sch, ok := m.Child(sys.ID, TypeSchema, t.Schema)
		if !ok {
			return true
		}
		if _, ok := m.Child(sch.ID, TypeTable, t.Name); !ok {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
