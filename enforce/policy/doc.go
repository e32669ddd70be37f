// Package policy evaluates the Rego policies attached to securables (issue 3,
// "Policies beyond grants"). A policy is one Rego module (v1 syntax, any
// package); every message in its `deny` set denies the call with that
// message. Policies are compiled once per catalog revision with
// github.com/open-policy-agent/opa/v1/rego (PrepareForEval) and evaluated
// per request with the request's context and a time limit; a policy that
// errors or times out denies (fail closed).
package policy
