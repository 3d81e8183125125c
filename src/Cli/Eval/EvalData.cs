using System.Text.Json;
using System.Text.Json.Nodes;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Cli.Eval;

/// <summary>One domain of the data folder; a file is null where the folder has none for it.</summary>
/// <param name="Kind">"text" or "task" as the manifest says; "unknown" without a manifest entry.</param>
public sealed record EvalDomain(string Name, string Kind, string? TrainFile, string? HeldoutFile, string? TasksFile);

/// <summary>A held-out exact-answer item: the conversation asked through the chat template, and the reply expected.</summary>
public sealed record TaskItem(IReadOnlyList<ChatMessage> Messages, string Answer);

/// <summary>
/// The data folder of docs/training-data-format.md, read-only. Files are found by scanning train/,
/// heldout/ and tasks/ (so every heldout/&lt;domain&gt;.jsonl is evaluated even if the manifest lags);
/// manifest.json, when present, supplies the domain kinds and order.
/// </summary>
public sealed class EvalData
{
    public required string Root { get; init; }
    public required IReadOnlyList<EvalDomain> Domains { get; init; }
    /// <summary>data/tokenizer/tokenizer.json, if present: the tokenizer the data was built for.</summary>
    public string? TokenizerJson { get; init; }

    /// <exception cref="DirectoryNotFoundException">The folder or all of its jsonl folders are missing.</exception>
    public static EvalData Open(string root)
    {
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"data folder {root} not found (build it with `moeserve-train data`)");
        var kinds = new Dictionary<string, string>(StringComparer.Ordinal);
        var order = new List<string>();
        string manifest = Path.Combine(root, "manifest.json");
        if (File.Exists(manifest))
        {
            foreach (var d in JsonNode.Parse(File.ReadAllText(manifest))?["domains"]?.AsArray() ?? [])
                if (d?["name"]?.GetValue<string>() is string name)
                {
                    kinds[name] = d["kind"]?.GetValue<string>() ?? "unknown";
                    order.Add(name);
                }
        }
        var train = Stems(root, "train");
        var heldout = Stems(root, "heldout");
        var tasks = Stems(root, "tasks");
        var names = order.Concat(train.Keys.Concat(heldout.Keys).Concat(tasks.Keys).Order(StringComparer.Ordinal)).Distinct().ToList();
        var domains = names
            .Select(n => new EvalDomain(n, kinds.GetValueOrDefault(n, "unknown"), train.GetValueOrDefault(n), heldout.GetValueOrDefault(n), tasks.GetValueOrDefault(n)))
            .Where(d => d.TrainFile is not null || d.HeldoutFile is not null || d.TasksFile is not null)
            .ToList();
        if (domains.Count == 0) throw new DirectoryNotFoundException($"{root} holds no train/, heldout/ or tasks/ *.jsonl files");
        string tokenizer = Path.Combine(root, "tokenizer", "tokenizer.json");
        return new EvalData { Root = root, Domains = domains, TokenizerJson = File.Exists(tokenizer) ? tokenizer : null };
    }

    /// <summary>The "text" field of every line of a train/ or heldout/ file, in file order.</summary>
    public static IEnumerable<string> ReadTexts(string path)
    {
        foreach (var (json, line) in ReadLines(path))
            yield return json["text"]?.GetValue<string>() ?? throw new InvalidDataException($"{path}:{line}: no \"text\" string");
    }

    /// <summary>The items of a tasks/ file, in file order.</summary>
    public static IEnumerable<TaskItem> ReadTasks(string path)
    {
        foreach (var (json, line) in ReadLines(path))
        {
            var messages = json["messages"]?.AsArray().Select(m => new ChatMessage(
                    m?["role"]?.GetValue<string>() ?? throw new InvalidDataException($"{path}:{line}: a message has no role"),
                    m["content"]?.GetValue<string>() ?? throw new InvalidDataException($"{path}:{line}: a message has no content")))
                .ToList() ?? throw new InvalidDataException($"{path}:{line}: no \"messages\" array");
            string answer = json["answer"]?.GetValue<string>() ?? throw new InvalidDataException($"{path}:{line}: no \"answer\" string");
            yield return new TaskItem(messages, answer);
        }
    }

    private static IEnumerable<(JsonNode Json, int Line)> ReadLines(string path)
    {
        int number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(line); }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{number}: not valid JSON ({e.Message})"); }
            yield return (node ?? throw new InvalidDataException($"{path}:{number}: null line"), number);
        }
    }

    /// <summary>domain name -> full path of &lt;root&gt;/&lt;folder&gt;/&lt;domain&gt;.jsonl.</summary>
    private static Dictionary<string, string> Stems(string root, string folder)
    {
        string dir = Path.Combine(root, folder);
        if (!Directory.Exists(dir)) return [];
        return Directory.GetFiles(dir, "*.jsonl").ToDictionary(f => Path.GetFileNameWithoutExtension(f), f => f, StringComparer.Ordinal);
    }
}
