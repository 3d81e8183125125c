using System.Text;
using MoeServe.Api.OpenAi;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Sampling;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Api.Endpoints;

/// <summary>Builds the two OpenAI logprob shapes: chat (objects per token) and legacy completions (parallel lists).</summary>
public static class LogprobFormatting
{
    public static ChatLogprobsDto Chat(ModelTokenizer tokenizer, IEnumerable<SampledToken> tokens) =>
        new(tokens.Select(t => new TokenLogprobDto(tokenizer.TokenText(t.TokenId), t.Logprob, Bytes(tokenizer.TokenText(t.TokenId)),
            t.TopLogprobs.Select(a => new TopLogprobDto(tokenizer.TokenText(a.TokenId), a.Logprob, Bytes(tokenizer.TokenText(a.TokenId)))).ToList())).ToList());

    private static int[] Bytes(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();

    /// <summary>Legacy logprobs for prompt tokens (when echoed) followed by generated tokens.</summary>
    /// <param name="textOffset">Character offset, in the returned text, of the first token listed.</param>
    public static CompletionLogprobsDto Legacy(ModelTokenizer tokenizer, IReadOnlyList<PromptTokenLogprob>? prompt,
        IEnumerable<SampledToken> generated, int textOffset)
    {
        var result = new CompletionLogprobsDto([], [], [], []);
        int offset = textOffset;
        void AddToken(int id, float? logprob, IReadOnlyList<TokenLogprob>? top)
        {
            string text = tokenizer.TokenText(id);
            result.Tokens.Add(text);
            result.TokenLogprobs.Add(logprob);
            result.TopLogprobs.Add(top is null ? null : TopDictionary(tokenizer, top));
            result.TextOffset.Add(offset);
            if (!tokenizer.IsSpecial(id)) offset += text.Length;
        }
        foreach (var p in prompt ?? []) AddToken(p.TokenId, p.Logprob, p.Logprob is null ? null : p.TopLogprobs);
        foreach (var t in generated) AddToken(t.TokenId, t.Logprob, t.TopLogprobs);
        return result;
    }

    private static Dictionary<string, float> TopDictionary(ModelTokenizer tokenizer, IReadOnlyList<TokenLogprob> top)
    {
        var dict = new Dictionary<string, float>();
        foreach (var a in top) dict.TryAdd(tokenizer.TokenText(a.TokenId), a.Logprob); // most likely first wins on equal text
        return dict;
    }
}
