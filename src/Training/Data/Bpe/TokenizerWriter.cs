using System.Text.Json;

namespace MoeServe.Training.Data.Bpe;

/// <summary>
/// Writes the trained model as a Hugging Face tokenizer.json (what ModelTokenizer and Hugging Face
/// tokenizers load) and tokenizer_config.json (special tokens, chat template).
/// </summary>
public static class TokenizerWriter
{
    public const string TokenizerFile = "tokenizer.json";
    public const string ConfigFile = "tokenizer_config.json";

    /// <summary>The special tokens' ids: right after the BPE tokens, in <see cref="SpecialTokens.All"/> order.</summary>
    public static IReadOnlyDictionary<string, int> SpecialIds(BpeModel model) =>
        SpecialTokens.All.Select((t, i) => (t, i)).ToDictionary(x => x.t, x => model.Tokens.Count + x.i);

    public static int VocabSize(BpeModel model) => model.Tokens.Count + SpecialTokens.All.Count;

    public static void Write(string directory, BpeModel model)
    {
        Directory.CreateDirectory(directory);
        var specials = SpecialIds(model);
        JsonFiles.Write(Path.Combine(directory, TokenizerFile), w => WriteTokenizer(w, model, specials));
        JsonFiles.Write(Path.Combine(directory, ConfigFile), w => WriteConfig(w, specials));
    }

    private static void WriteTokenizer(Utf8JsonWriter w, BpeModel model, IReadOnlyDictionary<string, int> specials)
    {
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        foreach (var content in SpecialTokens.All) WriteAddedToken(w, content, specials[content]);
        w.WriteEndArray();
        w.WriteNull("normalizer");
        WriteByteLevel(w, "pre_tokenizer", trimOffsets: true);
        WriteByteLevel(w, "post_processor", trimOffsets: false);
        WriteByteLevel(w, "decoder", trimOffsets: true);
        WriteModel(w, model, specials);
        w.WriteEndObject();
    }

    /// <summary>add_prefix_space false: training never put a space before a document's first word.</summary>
    private static void WriteByteLevel(Utf8JsonWriter w, string name, bool trimOffsets)
    {
        w.WriteStartObject(name);
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", trimOffsets);
        w.WriteBoolean("use_regex", true);
        w.WriteEndObject();
    }

    private static void WriteModel(Utf8JsonWriter w, BpeModel model, IReadOnlyDictionary<string, int> specials)
    {
        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteNull("unk_token");
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", false);
        w.WriteBoolean("byte_fallback", false);
        w.WriteBoolean("ignore_merges", false);
        w.WriteStartObject("vocab");
        for (int id = 0; id < model.Tokens.Count; id++) w.WriteNumber(model.Tokens[id], id);
        // The special tokens are in the vocabulary too (as in GPT-2's file), so every id below
        // vocab_size has an entry whichever loader reads it.
        foreach (var content in SpecialTokens.All) w.WriteNumber(content, specials[content]);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach (var (left, right) in model.Merges) w.WriteStringValue($"{left} {right}");
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>
    /// bos_token is null: no BOS is ever put before a document in training (documents are only
    /// separated by a trailing &lt;|endoftext|&gt;), so the loader must not find one to add.
    /// eos_token is &lt;|im_end|&gt;, the end of a chat reply; &lt;|endoftext|&gt; is the EOS of plain
    /// text and belongs in config.json's eos_token_id next to it.
    /// </summary>
    private static void WriteConfig(Utf8JsonWriter w, IReadOnlyDictionary<string, int> specials)
    {
        w.WriteStartObject();
        w.WriteBoolean("add_bos_token", false);
        w.WriteBoolean("add_eos_token", false);
        w.WriteStartObject("added_tokens_decoder");
        foreach (var content in SpecialTokens.All)
        {
            w.WritePropertyName(specials[content].ToString(System.Globalization.CultureInfo.InvariantCulture));
            WriteAddedToken(w, content, id: null);
        }
        w.WriteEndObject();
        w.WriteNull("bos_token");
        w.WriteString("eos_token", SpecialTokens.ImEnd);
        w.WriteString("pad_token", SpecialTokens.Pad);
        w.WriteNull("unk_token");
        w.WriteString("chat_template", ChatMl.JinjaTemplate);
        w.WriteBoolean("clean_up_tokenization_spaces", false);
        w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
        w.WriteEndObject();
    }

    /// <summary>An AddedToken; tokenizer_config.json's added_tokens_decoder keys it by id instead of an "id" field.</summary>
    private static void WriteAddedToken(Utf8JsonWriter w, string content, int? id)
    {
        w.WriteStartObject();
        if (id is int i) w.WriteNumber("id", i);
        w.WriteString("content", content);
        w.WriteBoolean("single_word", false);
        w.WriteBoolean("lstrip", false);
        w.WriteBoolean("rstrip", false);
        w.WriteBoolean("normalized", false);
        w.WriteBoolean("special", true);
        w.WriteEndObject();
    }
}
