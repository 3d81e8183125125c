using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Checkpoint;

/// <summary>
/// All tensors of a checkpoint folder: a single model.safetensors, or shards listed by
/// model.safetensors.index.json. Loads a tensor by its checkpoint key, checks its shape, and converts it
/// to the compute dtype on the target device.
/// </summary>
public sealed class WeightStore : IDisposable
{
    private readonly Dictionary<string, SafetensorsFile> _fileOf = new(StringComparer.Ordinal);
    private readonly List<SafetensorsFile> _files = [];

    public string ModelDir { get; }

    private WeightStore(string modelDir) => ModelDir = modelDir;

    public static WeightStore Open(string modelDir)
    {
        var store = new WeightStore(modelDir);
        try
        {
            string single = Path.Combine(modelDir, "model.safetensors");
            string index = Path.Combine(modelDir, "model.safetensors.index.json");
            if (File.Exists(index)) store.OpenShards(index);
            else if (File.Exists(single)) store.Add(SafetensorsFile.Open(single));
            else throw new CheckpointException($"{single}: file not found (nor {Path.GetFileName(index)})");
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    private void OpenShards(string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            weightMap = doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new CheckpointException($"{indexPath}: unreadable index ({e.Message})");
        }
        var opened = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        foreach (var (tensor, shard) in weightMap)
        {
            if (!opened.TryGetValue(shard, out var file))
            {
                file = SafetensorsFile.Open(Path.Combine(ModelDir, shard));
                opened[shard] = file;
                _files.Add(file);
            }
            if (!file.Entries.ContainsKey(tensor))
                throw new CheckpointException($"{file.Path}: tensor '{tensor}' is listed in {Path.GetFileName(indexPath)} but missing from the shard");
            _fileOf[tensor] = file;
        }
    }

    private void Add(SafetensorsFile file)
    {
        _files.Add(file);
        foreach (var name in file.Entries.Keys) _fileOf[name] = file;
    }

    public bool Contains(string name) => _fileOf.ContainsKey(name);

    /// <summary>Loads one tensor, checking it has exactly <paramref name="shape"/>.</summary>
    /// <returns>A tensor of <paramref name="shape"/>, in <paramref name="dtype"/>, on <paramref name="device"/>.</returns>
    public Tensor Load(string name, long[] shape, ScalarType dtype, Device device)
    {
        if (!_fileOf.TryGetValue(name, out var file))
            throw new CheckpointException($"{DescribeFiles()}: missing tensor '{name}'");
        var entry = file.Entries[name];
        if (!entry.Shape.SequenceEqual(shape))
            throw new CheckpointException($"{file.Path}: tensor '{name}' has shape [{string.Join(", ", entry.Shape)}], expected [{string.Join(", ", shape)}]");
        var stored = file.Read(entry);
        if (stored.dtype == dtype && stored.device.type == device.type && device.type == DeviceType.CPU) return stored;
        // fp16 matmul is very slow on CPU, so F16 weights are converted at load like every other dtype.
        using (stored) return stored.to(dtype, device);
    }

    private string DescribeFiles() => _files.Count == 1 ? _files[0].Path : Path.Combine(ModelDir, "model.safetensors.index.json");

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
