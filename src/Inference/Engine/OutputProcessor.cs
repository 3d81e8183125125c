using MoeServe.Inference.Sampling;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Inference.Engine;

/// <summary>
/// Per-sequence detokenisation and stop conditions: EOS, stop strings, max tokens. Text that could still
/// turn out to be the start of a stop string is held back, so a stop string never reaches a client.
/// </summary>
public sealed class OutputProcessor(ModelTokenizer tokenizer, GenerationRequest request)
{
    private readonly IncrementalDecoder _decoder = new(tokenizer);
    private readonly int _holdBack = request.StopStrings.Count == 0 ? 0 : request.StopStrings.Max(s => s.Length) - 1;
    private int _emitted;

    public int Generated { get; private set; }

    /// <summary>Accepts one sampled token; returns the text it releases and the finish reason, if any.</summary>
    public (string Delta, string? FinishReason) Accept(SampledToken token, bool contextFull)
    {
        Generated++;
        if (!request.IgnoreEos && tokenizer.EosIds.Contains(token.TokenId)) return (Release(_decoder.Text.Length), "stop");
        _decoder.Add(token.TokenId);
        string text = _decoder.Text;
        foreach (var stop in request.StopStrings)
        {
            int at = text.IndexOf(stop, Math.Max(0, _emitted - stop.Length), StringComparison.Ordinal);
            if (at >= 0) return (Release(at), "stop");
        }
        if (Generated >= request.MaxTokens || contextFull) return (Release(text.Length), "length");
        int safe = text.Length - _holdBack;
        if (text.EndsWith('\uFFFD')) safe = Math.Min(safe, text.Length - 1);
        return (Release(safe), null);
    }

    private string Release(int upTo)
    {
        if (upTo <= _emitted) return "";
        var delta = _decoder.Text[_emitted..upTo];
        _emitted = upTo;
        return delta;
    }
}
