using System.Buffers.Binary;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Checkpoint;

/// <summary>
/// One .safetensors file: an 8-byte little-endian header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the raw little-endian bytes. TorchSharp has no reader for it.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>A tensor's place in the file.</summary>
    public sealed record Entry(string Name, string Dtype, long[] Shape, long Begin, long End);

    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, Entry> Entries { get; }

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart, Dictionary<string, Entry> entries)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        Entries = entries;
    }

    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException($"{path}: file not found");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long fileLength = RandomAccess.GetLength(handle);
            Span<byte> lengthBytes = stackalloc byte[8];
            if (fileLength < 8 || RandomAccess.Read(handle, lengthBytes, 0) != 8)
                throw new CheckpointException($"{path}: not a safetensors file (too short)");
            long headerLength = BinaryPrimitives.ReadInt64LittleEndian(lengthBytes);
            if (headerLength <= 0 || headerLength > 100_000_000 || 8 + headerLength > fileLength)
                throw new CheckpointException($"{path}: not a safetensors file (bad header length {headerLength})");
            var header = new byte[headerLength];
            RandomAccess.Read(handle, header, 8);
            var entries = ParseHeader(path, header, fileLength - 8 - headerLength);
            return new SafetensorsFile(path, handle, 8 + headerLength, entries);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static Dictionary<string, Entry> ParseHeader(string path, byte[] header, long dataLength)
    {
        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(header);
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__") continue;
                var e = property.Value;
                var offsets = e.GetProperty("data_offsets");
                var entry = new Entry(property.Name, e.GetProperty("dtype").GetString()!,
                    e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
                    offsets[0].GetInt64(), offsets[1].GetInt64());
                long expected = entry.Shape.Aggregate(1L, (a, b) => a * b) * BytesPerElement(path, entry);
                if (entry.Begin < 0 || entry.End > dataLength || entry.End - entry.Begin != expected)
                    throw new CheckpointException($"{path}: tensor '{entry.Name}' has a byte range that does not match its shape and dtype");
                entries[entry.Name] = entry;
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            throw new CheckpointException($"{path}: unreadable safetensors header ({ex.Message})");
        }
        return entries;
    }

    private static long BytesPerElement(string path, Entry entry) => entry.Dtype switch
    {
        "F32" or "I32" => 4,
        "BF16" or "F16" or "I16" => 2,
        "F64" or "I64" => 8,
        "U8" or "I8" or "BOOL" => 1,
        _ => throw new CheckpointException($"{path}: tensor '{entry.Name}' has unsupported dtype {entry.Dtype}"),
    };

    private static ScalarType ToScalarType(Entry entry, string path) => entry.Dtype switch
    {
        "F32" => ScalarType.Float32,
        "BF16" => ScalarType.BFloat16,
        "F16" => ScalarType.Float16,
        "F64" => ScalarType.Float64,
        _ => throw new CheckpointException($"{path}: tensor '{entry.Name}' has dtype {entry.Dtype}; weights must be F32, BF16 or F16"),
    };

    /// <summary>Reads a tensor into CPU memory in its stored dtype.</summary>
    /// <returns>A CPU tensor of the stored shape and dtype (F32, BF16, F16 or F64).</returns>
    public Tensor Read(Entry entry)
    {
        var tensor = torch.empty(entry.Shape, ToScalarType(entry, Path));
        long total = entry.End - entry.Begin;
        if (total == 0) return tensor;
        // Tensor.bytes is a Span over native memory, so it is limited to 2 GB: read large tensors in row chunks.
        var flat = tensor.view(-1);
        long elementSize = total / flat.shape[0];
        long chunkElements = Math.Max(1, (1L << 30) / elementSize);
        for (long start = 0; start < flat.shape[0]; start += chunkElements)
        {
            long count = Math.Min(chunkElements, flat.shape[0] - start);
            using var chunk = flat.narrow(0, start, count);
            var span = chunk.bytes; // a view of the tensor's own native memory, not a copy
            long fileOffset = _dataStart + entry.Begin + start * elementSize;
            int read = 0;
            while (read < span.Length)
            {
                int n = RandomAccess.Read(_handle, span[read..], fileOffset + read);
                if (n <= 0) throw new CheckpointException($"{Path}: tensor '{entry.Name}' is truncated");
                read += n;
            }
        }
        return tensor;
    }

    public void Dispose() => _handle.Dispose();
}
