using MoeServe.Inference.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MoeServe.Inference.Model;

/// <summary>
/// Grouped-query self-attention with rotary embeddings (Mixtral), plus OLMoE's q/k RMSNorm and optional
/// qkv clipping. Projections run over the whole flat batch; attention runs per sequence over its cache.
/// Field names follow the checkpoint keys.
/// </summary>
public sealed class Attention : IDisposable
{
    public Tensor q_proj { get; }   // [heads*d, H]
    public Tensor k_proj { get; }   // [kvHeads*d, H]
    public Tensor v_proj { get; }   // [kvHeads*d, H]
    public Tensor o_proj { get; }   // [H, heads*d]
    public RmsNorm? q_norm { get; } // [heads*d] (OLMoE)
    public RmsNorm? k_norm { get; } // [kvHeads*d] (OLMoE)

    private readonly ModelConfig _config;
    private readonly int _layer;

    public Attention(ModelConfig config, int layer, string prefix, WeightStore weights, ScalarType dtype, Device device)
    {
        _config = config;
        _layer = layer;
        long h = config.HiddenSize, qDim = config.NumHeads * config.HeadDim, kvDim = config.NumKvHeads * config.HeadDim;
        q_proj = weights.Load($"{prefix}.q_proj.weight", [qDim, h], dtype, device);
        k_proj = weights.Load($"{prefix}.k_proj.weight", [kvDim, h], dtype, device);
        v_proj = weights.Load($"{prefix}.v_proj.weight", [kvDim, h], dtype, device);
        o_proj = weights.Load($"{prefix}.o_proj.weight", [h, qDim], dtype, device);
        if (config.HasQkNorm)
        {
            q_norm = new RmsNorm(weights.Load($"{prefix}.q_norm.weight", [qDim], dtype, device), config.RmsNormEps);
            k_norm = new RmsNorm(weights.Load($"{prefix}.k_norm.weight", [kvDim], dtype, device), config.RmsNormEps);
        }
    }

    /// <param name="x">[T, H] normalised hidden states of the flat batch, compute dtype.</param>
    /// <param name="positions">[T] int64 absolute positions.</param>
    /// <returns>[T, H] attention output, compute dtype.</returns>
    public Tensor Forward(Tensor x, Tensor positions, RotaryEmbedding rope, IReadOnlyList<SequenceSlice> sequences)
    {
        using var scope = NewDisposeScope();
        long t = x.shape[0];
        int heads = _config.NumHeads, kvHeads = _config.NumKvHeads, d = _config.HeadDim;
        var q = F.linear(x, q_proj);
        var k = F.linear(x, k_proj);
        var v = F.linear(x, v_proj);
        if (_config.ClipQkv is double clip)
        {
            q = q.clamp(-clip, clip);
            k = k.clamp(-clip, clip);
            v = v.clamp(-clip, clip);
        }
        if (q_norm is not null) q = q_norm.Forward(q);
        if (k_norm is not null) k = k_norm.Forward(k);
        q = rope.Apply(q.view(t, heads, d), positions); // [T, heads, d]
        k = rope.Apply(k.view(t, kvHeads, d), positions); // [T, kvHeads, d]
        v = v.view(t, kvHeads, d);

        var output = torch.empty([t, heads * d], x.dtype, x.device);
        foreach (var s in sequences)
        {
            var (keys, values) = s.Cache.Append(_layer, k.narrow(0, s.Start, s.Length), v.narrow(0, s.Start, s.Length));
            var attended = AttendOneSequence(q.narrow(0, s.Start, s.Length), keys, values, s.Cache.Length); // [L, heads*d]
            output.narrow(0, s.Start, s.Length).copy_(attended);
        }
        return F.linear(output, o_proj).MoveToOuterDisposeScope();
    }

    /// <param name="q">[L, heads, d] queries of the new tokens.</param>
    /// <param name="keys">[S, kvHeads, d] all keys of the sequence (S = past + L).</param>
    /// <param name="values">[S, kvHeads, d].</param>
    /// <param name="past">Tokens cached before this step.</param>
    /// <returns>[L, heads*d].</returns>
    private Tensor AttendOneSequence(Tensor q, Tensor keys, Tensor values, long past)
    {
        long l = q.shape[0], s = keys.shape[0];
        int heads = _config.NumHeads, kvHeads = _config.NumKvHeads, d = _config.HeadDim, group = heads / kvHeads;
        var qh = q.permute(1, 0, 2);        // [heads, L, d]
        var kh = keys.permute(1, 0, 2);     // [kvHeads, S, d]
        var vh = values.permute(1, 0, 2);   // [kvHeads, S, d]
        if (group > 1)
        {
            kh = kh.repeat_interleave(group, dim: 0); // [heads, S, d]
            vh = vh.repeat_interleave(group, dim: 0);
        }
        // Softmax in fp32 (as Hugging Face's eager attention does), one cast back.
        var scores = torch.matmul(qh.to(ScalarType.Float32), kh.to(ScalarType.Float32).transpose(1, 2)) / Math.Sqrt(d); // [heads, L, S]
        if (l > 1)
        {
            // Row i (position past + i) sees keys 0..past+i.
            var allowed = torch.ones([l, s], ScalarType.Bool, q.device).tril(past);
            scores = scores.masked_fill(allowed.logical_not(), float.NegativeInfinity);
        }
        var probs = scores.softmax(-1);
        var outH = torch.matmul(probs, vh.to(ScalarType.Float32)).to(q.dtype); // [heads, L, d]
        return outH.permute(1, 0, 2).reshape(l, heads * d);
    }

    public void Dispose()
    {
        q_proj.Dispose(); k_proj.Dispose(); v_proj.Dispose(); o_proj.Dispose();
        q_norm?.Dispose(); k_norm?.Dispose();
    }
}
