package catalog

import (
	"fmt"
	"strings"
)

// The on-behalf-of rule, on top of the evaluator: a call made by an agent
// (the actor, a service principal) for a human (the subject, a user or a
// service principal acting on its own) is allowed only if both hold the
// privilege. The decision engine (its reasons and steps) and EXPLAIN
// ACCESS both render it from here.

// Roles of an access decision.
const (
	RoleSubject = "subject"
	RoleActor   = "actor"
)

// AccessStep is one line of an explained access decision: one requirement
// of the subject or the actor (an EXPLAIN ACCESS row, an API step).
type AccessStep struct {
	Principal string `json:"principal"` // whose requirement (subject or actor)
	Role      string `json:"role"`      // RoleSubject or RoleActor
	Check     string `json:"check"`     // e.g. "USE CATALOG on CATALOG system"
	Result    string `json:"result"`    // "allow" or "deny"
	Reason    string `json:"reason"`    // the grant and group path, or what is missing
}

// AccessPart is one principal's part of an access decision.
type AccessPart struct {
	Allowed bool
	// Reason: `subject "alice" allowed: USE CATALOG on CATALOG eng: ...`,
	// `actor "agent" lacks USE CONNECTION on CONNECTION eng.tools.jira`.
	Reason string
	// Brief is Reason without the derivation of an allowed part
	// (`subject "alice" allowed`).
	Brief string
	// Steps, one per requirement, when asked for.
	Steps []AccessStep
}

// AccessDecision is the answer of the on-behalf-of rule.
type AccessDecision struct {
	Allowed bool
	Reason  string // the parts' reasons joined with "; "
	Brief   string // the parts' brief reasons joined with "; "
	Steps   []AccessStep
}

// RoleAccepts reports whether a principal of kind may act in role: a user
// or service principal as the subject, a service principal as the actor.
func RoleAccepts(role string, kind PrincipalKind) bool {
	return kind == KindServicePrincipal || (kind == KindUser && role == RoleSubject)
}

// accessPart evaluates the principal named name (id, 0 if it does not
// exist) in role on privilege pi and securable n.
func (st *authzState) accessPart(name string, id ID, role string, pi int, n *nodeRec, steps bool) AccessPart {
	deny := func(msg string) AccessPart {
		return AccessPart{Reason: msg, Brief: msg, Steps: []AccessStep{{Principal: name, Role: role,
			Check: "principal " + QuoteIdent(name), Result: "deny", Reason: msg}}}
	}
	pr := st.principal(id)
	switch {
	case name == "":
		return deny("no " + role + " given")
	case pr == nil:
		return deny(fmt.Sprintf("%s %s does not exist", role, QuoteIdent(name)))
	case !RoleAccepts(role, pr.p.Kind):
		must := "a user or a service principal"
		if role == RoleActor {
			must = "a service principal"
		}
		return deny(fmt.Sprintf("%s %s is a %s; the %s must be %s", role, QuoteIdent(name),
			strings.ToLower(string(pr.p.Kind)), role, must))
	}
	c := st.closure(id)
	d := Decision{Principal: c.p, Privilege: PrivilegeAt(pi)}
	if n != nil {
		d.Securable = n.sec
	}
	st.decide(c, pr, pi, n, &d)
	part := AccessPart{Allowed: d.Allowed}
	if steps {
		// Each requirement rendered once, for its step and the reason.
		var buf [2 * maxReqs]string
		what, how := buf[:d.n], buf[maxReqs:maxReqs+d.n]
		part.Steps = make([]AccessStep, d.n)
		for i := range d.n {
			r := &d.reqs[i]
			what[i], how[i] = r.What(), d.How(r)
			res := "allow"
			if !r.Met {
				res = "deny"
			}
			part.Steps[i] = AccessStep{Principal: c.p.Name, Role: role, Check: what[i], Result: res, Reason: how[i]}
		}
		part.Reason = role + " " + d.reason(what, how)
	} else {
		part.Reason = role + " " + d.Reason()
	}
	part.Brief = part.Reason
	if d.Allowed {
		part.Brief = role + " " + QuoteIdent(c.p.Name) + " allowed"
	}
	return part
}

// JoinAccess applies the on-behalf-of rule to the subject's part and the
// actor's (nil when the subject acts itself).
func JoinAccess(sub AccessPart, act *AccessPart) AccessDecision {
	d := AccessDecision(sub)
	if act != nil {
		d.Allowed = d.Allowed && act.Allowed
		d.Reason += "; " + act.Reason
		d.Brief += "; " + act.Brief
		d.Steps = append(d.Steps[:len(d.Steps):len(d.Steps)], act.Steps...)
	}
	return d
}

// Access answers "may actor, on behalf of subject, use priv on securable
// on" (actor "": the subject acts itself) on the Model as it is, with the
// steps when asked. Unknown principals and principals of the wrong kind
// are denials with a reason.
func (m *Model) Access(subject, actor string, priv Privilege, on ID, steps bool) AccessDecision {
	pi, n := PrivilegeIndex(priv), m.az.node(on)
	if pi < 0 || n == nil {
		return AccessDecision{Reason: "unknown privilege or securable"}
	}
	sub := m.az.accessPart(subject, m.byName[subject], RoleSubject, pi, n, steps)
	if actor == "" {
		return JoinAccess(sub, nil)
	}
	act := m.az.accessPart(actor, m.byName[actor], RoleActor, pi, n, steps)
	return JoinAccess(sub, &act)
}
