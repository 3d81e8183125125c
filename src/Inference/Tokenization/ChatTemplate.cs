using System.Text;

namespace MoeServe.Inference.Tokenization;

/// <summary>
/// Turns messages into the prompt text a chat model was trained on. Microsoft.ML.Tokenizers has no
/// Jinja engine, so MoeServe implements the template families itself and picks one from the checkpoint's
/// own chat_template text (or, when it has none, from its special tokens).
/// </summary>
public abstract class ChatTemplate
{
    public abstract string Name { get; }

    /// <summary>Renders the prompt, ending with the assistant's turn opener.</summary>
    /// <exception cref="ChatTemplateException">The conversation has a shape the template cannot express.</exception>
    public abstract string Render(IReadOnlyList<ChatMessage> messages);

    /// <summary>Chooses the family named by the checkpoint's metadata.</summary>
    public static ChatTemplate Detect(string? templateText, IEnumerable<string> specialTokens, string modelType, string? bos, string? eos)
    {
        var specials = specialTokens.ToHashSet();
        if (templateText is not null)
        {
            if (templateText.Contains("<|im_start|>")) return new ChatMlTemplate();
            if (templateText.Contains("[INST]")) return new InstTemplate(bos ?? "<s>", eos ?? "</s>");
            if (templateText.Contains("<|user|>")) return new TuluTemplate(bos ?? "", eos ?? "");
        }
        if (specials.Contains("<|im_start|>")) return new ChatMlTemplate();
        if (modelType == "mixtral") return new InstTemplate(bos ?? "<s>", eos ?? "</s>");
        return new TuluTemplate(bos ?? "", eos ?? "");
    }

    protected static void RequireMessages(IReadOnlyList<ChatMessage> messages)
    {
        if (messages.Count == 0) throw new ChatTemplateException("messages must contain at least one message");
        if (messages[^1].Role == "assistant") return; // continuing an assistant turn is allowed
    }
}

/// <summary>ChatML: &lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n per message, then the assistant opener.</summary>
public sealed class ChatMlTemplate : ChatTemplate
{
    public override string Name => "chatml";

    public override string Render(IReadOnlyList<ChatMessage> messages)
    {
        RequireMessages(messages);
        var sb = new StringBuilder();
        foreach (var m in messages) sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
        return sb.Append("<|im_start|>assistant\n").ToString();
    }
}

/// <summary>
/// The Mistral/Mixtral-Instruct [INST] family: &lt;s&gt;[INST] user [/INST]answer&lt;/s&gt;[INST] ...
/// Roles must alternate user/assistant starting with user; a system message is prepended to the first
/// user message, as the Llama 2 and later Mistral templates do.
/// </summary>
public sealed class InstTemplate(string bos, string eos) : ChatTemplate
{
    public override string Name => "inst";

    public override string Render(IReadOnlyList<ChatMessage> messages)
    {
        RequireMessages(messages);
        var turns = messages.ToList();
        string? system = null;
        if (turns[0].Role == "system")
        {
            system = turns[0].Content;
            turns.RemoveAt(0);
        }
        var sb = new StringBuilder(bos);
        for (int i = 0; i < turns.Count; i++)
        {
            string expected = i % 2 == 0 ? "user" : "assistant";
            if (turns[i].Role != expected)
                throw new ChatTemplateException("this model's chat template needs roles to alternate user/assistant/user/... (one optional system message first)");
            if (expected == "user")
            {
                string content = i == 0 && system is not null ? $"{system}\n\n{turns[i].Content}" : turns[i].Content;
                sb.Append("[INST] ").Append(content).Append(" [/INST]");
            }
            else sb.Append(turns[i].Content).Append(eos);
        }
        if (turns.Count == 0) throw new ChatTemplateException("messages must contain a user message");
        return sb.ToString();
    }
}

/// <summary>The Tulu family used by OLMoE-Instruct: &lt;|user|&gt;\ncontent\n&lt;|assistant|&gt;\n...</summary>
public sealed class TuluTemplate(string bos, string eos) : ChatTemplate
{
    public override string Name => "tulu";

    public override string Render(IReadOnlyList<ChatMessage> messages)
    {
        RequireMessages(messages);
        var sb = new StringBuilder(bos);
        foreach (var m in messages)
        {
            sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content);
            sb.Append(m.Role == "assistant" ? eos + "\n" : "\n");
        }
        return sb.Append("<|assistant|>\n").ToString();
    }
}
