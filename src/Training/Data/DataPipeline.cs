using System.Diagnostics;
using MoeServe.Training.Data.Bpe;
using MoeServe.Training.Data.Scripture;
using MoeServe.Training.Data.Tasks;

namespace MoeServe.Training.Data;

/// <summary>
/// `moeserve-train data` end to end: corpora, task items, jsonl files, BPE tokenizer, a check of the
/// tokenizer with the server's loader (which also counts tokens), manifest, summary.
/// </summary>
public sealed class DataPipeline(DataSettings settings, TextWriter log)
{
    private readonly Stopwatch _total = Stopwatch.StartNew();

    public void Run()
    {
        DataLayout.Prepare(settings.OutDir);
        var scripture = Step("scripture: read the KJV with `bible`", ScriptureDomain.Build);
        var domains = new List<DomainData> { scripture };
        domains.AddRange(Step("tasks: generate items", () => BuildTasks(scripture.TrainChars)));
        Step("write train/, heldout/, tasks/", () => WriteDocuments(domains));

        var model = Step("tokenizer: train byte-level BPE on train/", () => TrainTokenizer(domains));
        string tokenizerDir = DataLayout.Full(settings.OutDir, DataLayout.TokenizerDir);
        TokenizerWriter.Write(tokenizerDir, model);
        int vocabSize = TokenizerWriter.VocabSize(model);
        if (vocabSize != settings.VocabSize)
            log.WriteLine($"warning: the training text only supports {vocabSize} tokens, not {settings.VocabSize}");

        var tokens = Step("check: load with ModelTokenizer, round-trip and count every document", () => CheckAll(tokenizerDir, model, domains));
        var summary = domains.Zip(tokens).ToList();
        ManifestWriter.Write(settings.OutDir, settings, vocabSize, summary);
        SummaryTable.Print(log, summary, vocabSize);
        SummaryTable.PrintExamples(log, domains);
        log.WriteLine($"\nwrote {settings.OutDir} in {_total.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>
    /// Each family gets an equal share of the scripture's training characters, so that the tasks are
    /// about half of all training text.
    /// </summary>
    private List<DomainData> BuildTasks(long scriptureTrainChars)
    {
        long perFamily = scriptureTrainChars / TaskFamilies.All.Count;
        var sets = TaskFamilies.All.Select(f => TaskSetBuilder.Build(f, settings.Seed, settings.HeldoutItemsPerFamily, perFamily)).ToList();
        foreach (var set in sets)
            log.WriteLine($"  {set.Family.Name}: {set.Train.Count} train items ({set.Excluded} draws dropped as held-out problems), {set.Heldout.Count} held out");
        CheckDisjoint(sets);
        return sets.Select(s => TaskDomain.From(s, settings.Seed)).ToList();
    }

    /// <summary>Belt and braces over the key check: no held-out conversation text occurs in any family's train set.</summary>
    private static void CheckDisjoint(IEnumerable<TaskSet> sets)
    {
        var all = sets.ToList();
        var train = all.SelectMany(s => s.Train).Select(i => i.Conversation).ToHashSet(StringComparer.Ordinal);
        foreach (var item in all.SelectMany(s => s.Heldout))
            if (train.Contains(item.Conversation)) throw new InvalidOperationException($"held-out item also in train: {item.Question}");
    }

    private void WriteDocuments(IEnumerable<DomainData> domains)
    {
        foreach (var d in domains)
        {
            JsonlWriter.WriteTexts(DataLayout.Full(settings.OutDir, DataLayout.Train(d.Name)), d.Train);
            JsonlWriter.WriteTexts(DataLayout.Full(settings.OutDir, DataLayout.Heldout(d.Name)), d.Heldout);
            if (d.Tasks is not null) JsonlWriter.WriteTasks(DataLayout.Full(settings.OutDir, DataLayout.Tasks(d.Name)), d.Tasks);
        }
    }

    private BpeModel TrainTokenizer(IEnumerable<DomainData> domains)
    {
        var words = PreTokenizer.CountWords(domains.SelectMany(d => d.Train));
        log.WriteLine($"  {words.Count} distinct pre-tokens, {words.Values.Sum()} in all");
        return BpeTrainer.Train(words, settings.VocabSize - SpecialTokens.All.Count);
    }

    private static List<DomainTokens> CheckAll(string tokenizerDir, BpeModel model, IEnumerable<DomainData> domains)
    {
        var check = TokenizerCheck.Load(tokenizerDir, model);
        return domains.Select(d => new DomainTokens(Tally(check, d.Train), Tally(check, d.Heldout))).ToList();
    }

    private static TokenTally Tally(TokenizerCheck check, IEnumerable<string> documents)
    {
        var tally = new TokenTally();
        foreach (var document in documents) check.CheckDocument(document, tally);
        return tally;
    }

    private T Step<T>(string name, Func<T> action)
    {
        var watch = Stopwatch.StartNew();
        log.WriteLine($"{name} ...");
        var result = action();
        log.WriteLine($"  done in {watch.Elapsed.TotalSeconds:F1} s");
        return result;
    }

    private void Step(string name, Action action) => Step<bool>(name, () => { action(); return true; });
}
