using System.Buffers.Binary;
using System.Text;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

public class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("moeserve-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Writes a safetensors file by hand: the format as documented, independent of the reader.</summary>
    private static void WriteSafetensors(string path, params (string Name, string Dtype, long[] Shape, byte[] Data)[] tensors)
    {
        var header = new StringBuilder("{");
        long offset = 0;
        foreach (var (name, dtype, shape, data) in tensors)
        {
            header.Append($"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(',', shape)}],\"data_offsets\":[{offset},{offset + data.Length}]}},");
            offset += data.Length;
        }
        header.Append("\"__metadata__\":{\"format\":\"pt\"}}");
        var headerBytes = Encoding.UTF8.GetBytes(header.ToString());
        using var f = File.Create(path);
        var len = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(len, headerBytes.Length);
        f.Write(len);
        f.Write(headerBytes);
        foreach (var t in tensors) f.Write(t.Data);
    }

    private static byte[] Floats(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();

    /// <summary>bfloat16 is the upper half of a float32.</summary>
    private static byte[] BFloat16(params float[] v) => v.SelectMany(x => BitConverter.GetBytes(x)[2..]).ToArray();

    private static byte[] Half(params float[] v) => v.SelectMany(x => BitConverter.GetBytes((System.Half)x)).ToArray();

    [Fact]
    public void Reads_F32_BF16_and_F16_tensors_and_converts_them_to_the_compute_dtype()
    {
        string path = Path.Combine(_dir, "model.safetensors");
        WriteSafetensors(path,
            ("a", "F32", [2, 2], Floats(1, 2, 3, 4)),
            ("b", "BF16", [3], BFloat16(0.5f, -2f, 1024f)),
            ("c", "F16", [2], Half(0.25f, -8f)));
        using var store = WeightStore.Open(_dir);
        using var scope = NewDisposeScope();
        Assert.Equal(new[] { 1f, 2, 3, 4 }, store.Load("a", [2, 2], ScalarType.Float32, CPU).data<float>().ToArray());
        Assert.Equal(new[] { 0.5f, -2f, 1024f }, store.Load("b", [3], ScalarType.Float32, CPU).data<float>().ToArray());
        Assert.Equal(new[] { 0.25f, -8f }, store.Load("c", [2], ScalarType.Float32, CPU).data<float>().ToArray());
        Assert.Equal(ScalarType.BFloat16, store.Load("a", [2, 2], ScalarType.BFloat16, CPU).dtype);
    }

    [Fact]
    public void A_wrong_shape_names_the_file_and_the_tensor()
    {
        WriteSafetensors(Path.Combine(_dir, "model.safetensors"), ("w", "F32", [2], Floats(1, 2)));
        using var store = WeightStore.Open(_dir);
        var e = Assert.Throws<CheckpointException>(() => store.Load("w", [3], ScalarType.Float32, CPU));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("'w'", e.Message);
        Assert.Contains("[2]", e.Message);
    }

    [Fact]
    public void A_missing_tensor_is_named()
    {
        WriteSafetensors(Path.Combine(_dir, "model.safetensors"), ("w", "F32", [2], Floats(1, 2)));
        using var store = WeightStore.Open(_dir);
        var e = Assert.Throws<CheckpointException>(() => store.Load("model.norm.weight", [2], ScalarType.Float32, CPU));
        Assert.Contains("missing tensor 'model.norm.weight'", e.Message);
    }

    [Fact]
    public void A_truncated_file_is_reported_not_crashed()
    {
        string path = Path.Combine(_dir, "model.safetensors");
        WriteSafetensors(path, ("w", "F32", [4], Floats(1, 2, 3, 4)));
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);
        var e = Assert.Throws<CheckpointException>(() => WeightStore.Open(_dir));
        Assert.Contains("'w'", e.Message);
    }

    [Fact]
    public void A_shard_listed_in_the_index_but_absent_is_named()
    {
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"),
            "{\"weight_map\": {\"w\": \"model-00001-of-00002.safetensors\"}}");
        var e = Assert.Throws<CheckpointException>(() => WeightStore.Open(_dir));
        Assert.Contains("model-00001-of-00002.safetensors", e.Message);
    }

    [Fact]
    public void Unknown_model_type_is_refused_with_the_file_named()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), "{\"model_type\": \"llama\", \"vocab_size\": 10}");
        var e = Assert.Throws<CheckpointException>(() => ModelConfig.Load(_dir));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("'llama'", e.Message);
    }

    [Fact]
    public void Loading_a_model_with_a_missing_expert_names_that_tensor()
    {
        string src = RepositoryPaths.DefaultModel;
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
        // Rewrite the checkpoint without one expert matrix.
        string path = Path.Combine(_dir, "model.safetensors");
        using (var full = SafetensorsFile.Open(Path.Combine(src, "model.safetensors")))
        {
            var kept = full.Entries.Values.Where(e => e.Name != "model.layers.1.block_sparse_moe.experts.3.w2.weight")
                .Select(e =>
                {
                    using var t = full.Read(e);
                    return (e.Name, e.Dtype, e.Shape, t.bytes.ToArray());
                }).ToArray();
            WriteSafetensors(path, kept);
        }
        var ex = Assert.Throws<CheckpointException>(() => MoeForCausalLM.Load(_dir, ScalarType.Float32, CPU));
        Assert.Contains("model.layers.1.block_sparse_moe.experts.3.w2.weight", ex.Message);
    }
}
