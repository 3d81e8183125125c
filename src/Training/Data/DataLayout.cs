namespace MoeServe.Training.Data;

/// <summary>The paths of docs/training-data-format.md, relative to the data folder (forward slashes, as the manifest records them).</summary>
public static class DataLayout
{
    public const string Manifest = "manifest.json";
    public const string TokenizerDir = "tokenizer";
    public static readonly IReadOnlyList<string> OwnedFolders = ["train", "heldout", "tasks", TokenizerDir];

    public static string Train(string domain) => $"train/{domain}.jsonl";
    public static string Heldout(string domain) => $"heldout/{domain}.jsonl";
    public static string Tasks(string family) => $"tasks/{family}.jsonl";

    /// <summary>
    /// Empties what an earlier run wrote (so no stale family file survives) but refuses a non-empty
    /// folder without a manifest: --out may point at something that is not ours.
    /// </summary>
    public static void Prepare(string outDir)
    {
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any())
        {
            if (!File.Exists(Path.Combine(outDir, Manifest)))
                throw new IOException($"{outDir} is not empty and has no {Manifest}: not a data folder written by `moeserve-train data`; choose another --out");
            foreach (var folder in OwnedFolders)
                if (Directory.Exists(Path.Combine(outDir, folder))) Directory.Delete(Path.Combine(outDir, folder), recursive: true);
            File.Delete(Path.Combine(outDir, Manifest));
        }
        Directory.CreateDirectory(outDir);
    }

    public static string Full(string outDir, string relative) => Path.Combine(outDir, relative.Replace('/', Path.DirectorySeparatorChar));
}
