package guardstage

import (
	"context"
	"fmt"

	"github.com/mandatehq/mandate/gateway/pipeline"
)

// llmFormatPrefix starts the pipeline.Content formats of the LLM
// endpoint ("llm/chat.completions", "llm/messages", …).
const llmFormatPrefix = "llm/"

// llmState is the state of an LLM call's answer.
type llmState struct{}

func (s *Stage) llmCall(ctx context.Context, c *pipeline.Call, st *callState, in *pipeline.Content) (pipeline.Verdict, error) {
	return pipeline.Verdict{}, fmt.Errorf("guardrails on %s are not supported yet", in.Format)
}

func (s *Stage) llmResult(ctx context.Context, c *pipeline.Call, st *callState, out *pipeline.Content) (pipeline.Verdict, error) {
	return pipeline.Verdict{}, fmt.Errorf("guardrails on %s are not supported yet", out.Format)
}
