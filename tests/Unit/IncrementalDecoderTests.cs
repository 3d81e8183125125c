using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Unit.Tests;

/// <summary>Streaming detokenisation over a window of ids gives the text of decoding every id at once.</summary>
public class IncrementalDecoderTests
{
    private static readonly string[] Texts =
    [
        "The quick brown fox jumps over the lazy dog. 12 + 30 = 42",
        "  leading spaces,\ttabs and\nnew lines\n\n  ",
        "Accents: café, naïve, Ångström; CJK: 東京タワー; emoji: 🦊🚀 and ü",
        "sort: 9 3 7 1 -> 1 3 7 9; copy: abc abc",
    ];

    private static ModelTokenizer Load(string dir) => ModelTokenizer.Load(dir, ModelConfig.Load(dir));

    public static TheoryData<string> Tokenizers => new()
    {
        RepositoryPaths.DefaultModel,
        RepositoryPaths.Fixture("mixtral-tiny-bf16-sharded"),
        RepositoryPaths.Fixture("mixtral-tiny-sentencepiece"),
        RepositoryPaths.Fixture("olmoe-tiny-f32"),
    };

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Deltas_add_up_to_the_full_decode_at_every_step(string dir)
    {
        var tokenizer = Load(dir);
        foreach (var text in Texts)
        {
            var ids = tokenizer.Encode(text, addBos: false);
            var decoder = new IncrementalDecoder(tokenizer);
            string streamed = "";
            for (int i = 0; i < ids.Length; i++)
            {
                streamed += decoder.Add(ids[i]);
                string full = tokenizer.Decode(ids.Take(i + 1));
                Assert.Equal(full, decoder.Text);
                // Released text is the full text less at most a held-back incomplete character.
                Assert.StartsWith(streamed, full, StringComparison.Ordinal);
                if (!full.EndsWith('\uFFFD')) Assert.Equal(full, streamed);
            }
            Assert.Equal(tokenizer.Decode(ids), streamed + decoder.Flush());
        }
    }

    [Fact]
    public void A_character_split_over_byte_tokens_is_released_whole()
    {
        // The shipped tokenizer is byte-level: a 4-byte emoji that no merge covers arrives as several tokens.
        var tokenizer = Load(RepositoryPaths.DefaultModel);
        var ids = tokenizer.Encode("🦊", addBos: false);
        Assert.True(ids.Length > 1, "the emoji is one token in this vocabulary; pick another character");
        var decoder = new IncrementalDecoder(tokenizer);
        var deltas = ids.Select(decoder.Add).ToList();
        Assert.All(deltas.Take(ids.Length - 1), d => Assert.Equal("", d));
        Assert.Equal("🦊", deltas[^1]);
    }
}
