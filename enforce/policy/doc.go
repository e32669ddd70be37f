// Package policy evaluates the Rego policies attached to securables. A
// policy is one Rego module (v1 syntax, any package); every message in its
// `deny` set denies the call with that message. A Cache prepares the
// policies of a catalog revision with github.com/open-policy-agent/opa/v1/rego
// (PrepareForEval) when the decision engine builds its snapshot, keeping
// each under the hash of its name and source so that an unchanged policy is
// not compiled again for the next revision; a Set is evaluated per request
// with the request's context and a time limit. A policy that does not
// compile, errors or times out denies (fail closed).
package policy
