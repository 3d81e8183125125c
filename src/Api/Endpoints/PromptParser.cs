using System.Text.Json;
using MoeServe.Api.OpenAi;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Api.Endpoints;

/// <summary>The four prompt forms of /v1/completions: string, list of strings, token ids, list of token-id lists.</summary>
public static class PromptParser
{
    public const int MaxPrompts = 64;

    public static List<int[]> Parse(JsonElement? prompt, ModelTokenizer tokenizer, int vocabSize)
    {
        if (prompt is not JsonElement p || p.ValueKind == JsonValueKind.Null) throw OpenAiException.Invalid("prompt is required", "prompt");
        List<int[]> prompts;
        if (p.ValueKind == JsonValueKind.String) prompts = [FromText(JsonStrings.Text(p, "prompt"), tokenizer)];
        else if (p.ValueKind != JsonValueKind.Array || p.GetArrayLength() == 0)
            throw OpenAiException.Invalid("prompt must be a string, a list of strings, a list of token ids, or a list of token-id lists", "prompt");
        else
        {
            var items = p.EnumerateArray().ToList();
            if (items.All(x => x.ValueKind == JsonValueKind.String)) prompts = items.Select((x, i) => FromText(JsonStrings.Text(x, $"prompt[{i}]"), tokenizer)).ToList();
            else if (items.All(x => x.ValueKind == JsonValueKind.Number)) prompts = [TokenIds(p, vocabSize, "prompt")];
            else if (items.All(x => x.ValueKind == JsonValueKind.Array)) prompts = items.Select((x, i) => TokenIds(x, vocabSize, $"prompt[{i}]")).ToList();
            else throw OpenAiException.Invalid("prompt lists must hold only strings, only token ids, or only token-id lists", "prompt");
        }
        if (prompts.Count > MaxPrompts) throw OpenAiException.Invalid($"at most {MaxPrompts} prompts per request", "prompt");
        return prompts;
    }

    private static int[] FromText(string text, ModelTokenizer tokenizer)
    {
        var ids = tokenizer.Encode(text, tokenizer.AddBosToPrompts);
        if (ids.Length == 0) throw OpenAiException.Invalid("prompt must not be empty", "prompt");
        return ids;
    }

    private static int[] TokenIds(JsonElement list, int vocabSize, string param)
    {
        var ids = new List<int>();
        foreach (var x in list.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out int id) || id < 0 || id >= vocabSize)
                throw OpenAiException.Invalid($"{param} holds a token id outside [0, {vocabSize})", param);
            ids.Add(id);
        }
        if (ids.Count == 0) throw OpenAiException.Invalid($"{param} must not be empty", param);
        return ids.ToArray();
    }
}
