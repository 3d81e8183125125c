using System.Text;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Sampling;

namespace MoeServe.Api.Endpoints;

/// <summary>Collects one choice's events into its final text, tokens and finish reason (non-streaming answers).</summary>
public sealed class ChoiceAccumulator
{
    private readonly StringBuilder _text = new();

    public List<SampledToken> Tokens { get; } = [];
    public IReadOnlyList<PromptTokenLogprob>? PromptLogprobs { get; private set; }
    public string? FinishReason { get; private set; }
    public int PromptTokens { get; private set; }
    public long DroppedPairs { get; private set; }
    public long ReroutedPairs { get; private set; }
    public string Text => _text.ToString();

    public void Add(SequenceEvent e)
    {
        if (e.Token is not null) Tokens.Add(e.Token);
        _text.Append(e.TextDelta);
        PromptLogprobs ??= e.PromptLogprobs;
        PromptTokens = e.PromptTokens;
        // Each event carries the sequence's running totals.
        DroppedPairs = Math.Max(DroppedPairs, e.DroppedPairs);
        ReroutedPairs = Math.Max(ReroutedPairs, e.ReroutedPairs);
        if (e.FinishReason is not null) FinishReason = e.FinishReason;
    }
}
