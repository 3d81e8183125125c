using System.CommandLine;
using System.Globalization;

namespace MoeServe.Training.Data;

/// <summary>
/// `moeserve-train data`: builds the training corpus, the held-out sets, the task items and the
/// tokenizer (docs/training-data-format.md). Deterministic: the same seed and vocabulary size give
/// byte-identical files.
/// </summary>
public static class DataCommand
{
    private const string DefaultOut = "data";

    public static Command Create()
    {
        var outDir = new Option<string?>("--out") { Description = $"Output folder (default: {DefaultOut} under the repository root)" };
        var seed = new Option<int>("--seed") { Description = "Seed of the generated tasks", DefaultValueFactory = _ => 1234 };
        var vocabSize = new Option<int>("--vocab-size")
        {
            Description = "Tokenizer vocabulary size, the 4 special tokens included",
            DefaultValueFactory = _ => 4096,
        };
        var command = new Command("data", "Build the training data (KJV scripture, generated tasks) and train the BPE tokenizer")
        {
            outDir, seed, vocabSize,
        };
        command.SetAction(result => Run(result.GetValue(outDir), result.GetValue(seed), result.GetValue(vocabSize)));
        return command;
    }

    private static int Run(string? outDir, int seed, int vocabSize)
    {
        if (vocabSize < DataSettings.MinVocabSize)
        {
            Console.Error.WriteLine($"data: --vocab-size must be at least {DataSettings.MinVocabSize} (256 bytes, 4 special tokens, 1 merge)");
            return 2;
        }
        // Numbers in the generated text ("-12") must not follow the machine's locale (U+2212 minus, digit grouping).
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        try
        {
            string dir = Path.GetFullPath(outDir ?? Path.Combine(RepositoryRoot.Find(), DefaultOut));
            new DataPipeline(new DataSettings(dir, seed, vocabSize), Console.Out).Run();
            return 0;
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"data: {e.Message}");
            return 1;
        }
    }
}
