using System.Globalization;
using System.Text.Json;
using MoeServe.Training.Data.Tasks;

namespace MoeServe.Training.Data;

/// <summary>The Markdown summary `data` prints at the end: sizes per domain, then one example per task family.</summary>
public static class SummaryTable
{
    public static void Print(TextWriter output, IReadOnlyList<(DomainData Domain, DomainTokens Tokens)> domains, int vocabSize)
    {
        long allTrainChars = domains.Sum(d => d.Domain.TrainChars);
        output.WriteLine();
        output.WriteLine("| domain | kind | train docs | train chars | share | train tokens | held-out docs | held-out chars | held-out tokens | chars/token (held-out, text only) |");
        output.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (domain, tokens) in domains)
            output.WriteLine(Row(domain.Name, domain.Kind, domain.Train.Count, domain.Heldout.Count, tokens, allTrainChars));
        var total = new DomainTokens(Sum(domains.Select(d => d.Tokens.Train)), Sum(domains.Select(d => d.Tokens.Heldout)));
        output.WriteLine(Row("**total**", "", domains.Sum(d => d.Domain.Train.Count), domains.Sum(d => d.Domain.Heldout.Count), total, allTrainChars));
        output.WriteLine();
        output.WriteLine($"vocab_size {vocabSize} ({vocabSize - SpecialTokens.All.Count} BPE tokens + {SpecialTokens.All.Count} special)");
    }

    /// <summary>One held-out item per family, JSON-quoted so that each stays on one line.</summary>
    public static void PrintExamples(TextWriter output, IEnumerable<DomainData> domains)
    {
        output.WriteLine();
        foreach (var domain in domains)
            if (domain.Tasks is { Count: > 0 } items)
                output.WriteLine($"{domain.Name}: {Quote(items[0].Question)} -> {Quote(items[0].Answer)}");
    }

    private static string Row(string name, string kind, int trainDocs, int heldoutDocs, DomainTokens t, long allTrainChars) =>
        string.Join(" | ",
            "| " + name, kind, N(trainDocs), N(t.Train.Chars), (100.0 * t.Train.Chars / allTrainChars).ToString("F1", CultureInfo.InvariantCulture) + "%",
            N(t.Train.Tokens), N(heldoutDocs), N(t.Heldout.Chars), N(t.Heldout.Tokens),
            t.Heldout.TextCharsPerToken.ToString("F2", CultureInfo.InvariantCulture) + " |");

    private static TokenTally Sum(IEnumerable<TokenTally> tallies)
    {
        var sum = new TokenTally();
        foreach (var t in tallies) sum.Add(t.Chars, t.Tokens, t.TextChars, t.TextTokens);
        return sum;
    }

    private static string N(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    private static string Quote(string s) => JsonSerializer.Serialize(s, new JsonSerializerOptions { Encoder = JsonFiles.Compact.Encoder });
}
