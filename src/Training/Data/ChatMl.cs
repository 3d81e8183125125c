namespace MoeServe.Training.Data;

/// <summary>
/// The ChatML rendering that task documents are trained on. It must match what the server's
/// ChatMlTemplate sends as a prompt (user turn, then "&lt;|im_start|&gt;assistant\n"), so that a trained
/// model's greedy continuation of a served prompt is "{answer}&lt;|im_end|&gt;".
/// </summary>
public static class ChatMl
{
    public static string Conversation(string user, string assistant) =>
        $"{SpecialTokens.ImStart}user\n{user}{SpecialTokens.ImEnd}\n{SpecialTokens.ImStart}assistant\n{assistant}{SpecialTokens.ImEnd}\n";

    /// <summary>
    /// The same format as a Jinja template for tokenizer_config.json (Hugging Face clients); no default
    /// system message, because training never had one.
    /// </summary>
    public const string JinjaTemplate =
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
}
