using System.Text;
using System.Text.Json;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Training.Data.Bpe;

/// <summary>
/// Checks the written files with the server's own loader (ModelTokenizer on top of
/// Microsoft.ML.Tokenizers) rather than with this trainer's code, so a file the server would read
/// differently fails here: special tokens map to their ids, the chat template is ChatML, and every
/// document round-trips exactly.
/// </summary>
public sealed class TokenizerCheck
{
    private readonly ModelTokenizer _tokenizer;
    private readonly IReadOnlyDictionary<string, int> _specials;

    private TokenizerCheck(ModelTokenizer tokenizer, IReadOnlyDictionary<string, int> specials)
    {
        _tokenizer = tokenizer;
        _specials = specials;
    }

    /// <summary>Loads <paramref name="tokenizerDir"/> as a checkpoint would be loaded and checks its metadata.</summary>
    /// <exception cref="InvalidDataException">The loader sees something other than what was written.</exception>
    public static TokenizerCheck Load(string tokenizerDir, BpeModel model)
    {
        var specials = TokenizerWriter.SpecialIds(model);
        // ModelTokenizer.Load wants a checkpoint folder: the tokenizer files plus a config.json.
        var dir = Directory.CreateTempSubdirectory("moeserve-tokenizer-check-");
        try
        {
            foreach (var file in new[] { TokenizerWriter.TokenizerFile, TokenizerWriter.ConfigFile })
                File.Copy(Path.Combine(tokenizerDir, file), Path.Combine(dir.FullName, file));
            WriteMinimalConfig(dir.FullName, TokenizerWriter.VocabSize(model));
            var tokenizer = ModelTokenizer.Load(dir.FullName, ModelConfig.Load(dir.FullName));
            var check = new TokenizerCheck(tokenizer, specials);
            check.CheckMetadata();
            return check;
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Encodes one document, requires Encode to equal the concatenation of the special tokens' ids and
    /// the encodings of the text between them, and Decode to give back that text exactly; adds the counts.
    /// </summary>
    public void CheckDocument(string document, TokenTally tally)
    {
        var ids = _tokenizer.Encode(document, addBos: false);
        var expected = new List<int>(ids.Length);
        var text = new StringBuilder(document.Length);
        foreach (var (piece, isSpecial) in PreTokenizer.SplitSpecials(document))
        {
            if (isSpecial) expected.Add(_specials[piece]);
            else
            {
                expected.AddRange(_tokenizer.Encode(piece, addBos: false));
                text.Append(piece);
            }
        }
        if (!ids.AsSpan().SequenceEqual(expected.ToArray()))
            throw new InvalidDataException($"special tokens do not split the encoding of: {Preview(document)}");
        string decoded = _tokenizer.Decode(ids);
        if (decoded != text.ToString())
            throw new InvalidDataException($"Decode(Encode(text)) differs from the text: {Preview(document)} -> {Preview(decoded)}");
        int specialCount = ids.Count(_tokenizer.IsSpecial);
        tally.Add(document.Length, ids.Length, text.Length, ids.Length - specialCount);
    }

    private void CheckMetadata()
    {
        foreach (var (content, id) in _specials)
        {
            var ids = _tokenizer.Encode(content, addBos: false);
            if (ids.Length != 1 || ids[0] != id)
                throw new InvalidDataException($"{content} encodes to [{string.Join(", ", ids)}], expected [{id}]");
            if (!_tokenizer.IsSpecial(id)) throw new InvalidDataException($"{content} ({id}) is not special to the loader");
        }
        Require(_tokenizer.ChatTemplate.Name == "chatml", $"chat template detected as {_tokenizer.ChatTemplate.Name}, expected chatml");
        Require(_tokenizer.EosIds.Contains(_specials[SpecialTokens.ImEnd]), "<|im_end|> is not an EOS");
        Require(_tokenizer.BosId is null && !_tokenizer.AddBosToPrompts, "the loader found a BOS token to add");
    }

    private static void Require(bool ok, string message)
    {
        if (!ok) throw new InvalidDataException(message);
    }

    /// <summary>
    /// The fields ModelConfig.Load requires; sizes are placeholders, vocab_size is the real one. No
    /// eos_token_id, so that the EOS check sees what tokenizer_config.json alone declares.
    /// </summary>
    private static void WriteMinimalConfig(string dir, int vocabSize)
    {
        using var stream = File.Create(Path.Combine(dir, "config.json"));
        using var w = new Utf8JsonWriter(stream);
        w.WriteStartObject();
        w.WriteString("model_type", "mixtral");
        w.WriteNumber("vocab_size", vocabSize);
        w.WriteNumber("hidden_size", 64);
        w.WriteNumber("intermediate_size", 128);
        w.WriteNumber("num_hidden_layers", 1);
        w.WriteNumber("num_attention_heads", 4);
        w.WriteNumber("num_key_value_heads", 4);
        w.WriteNumber("num_local_experts", 2);
        w.WriteNumber("num_experts_per_tok", 1);
        w.WriteEndObject();
    }

    private static string Preview(string s) => JsonSerializer.Serialize(s.Length <= 120 ? s : s[..120] + "...");
}
