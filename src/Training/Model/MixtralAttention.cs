using MoeServe.Inference.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MoeServe.Training.Model;

/// <summary>
/// Grouped-query causal self-attention with rotary embeddings over whole sequences (no KV cache).
/// Parameters: q_proj [heads*d, H], k_proj and v_proj [kvHeads*d, H], o_proj [H, heads*d], no biases.
/// </summary>
public sealed class MixtralAttention : nn.Module<Tensor, RotaryTables, Tensor>
{
    private readonly Linear q_proj, k_proj, v_proj, o_proj;
    private readonly int _heads, _kvHeads, _headDim;
    private readonly ScalarType _compute;

    public MixtralAttention(ModelConfig config, ScalarType compute) : base(nameof(MixtralAttention))
    {
        _compute = compute;
        _heads = config.NumHeads;
        _kvHeads = config.NumKvHeads;
        _headDim = config.HeadDim;
        long h = config.HiddenSize;
        q_proj = nn.Linear(h, (long)_heads * _headDim, hasBias: false);
        k_proj = nn.Linear(h, (long)_kvHeads * _headDim, hasBias: false);
        v_proj = nn.Linear(h, (long)_kvHeads * _headDim, hasBias: false);
        o_proj = nn.Linear((long)_heads * _headDim, h, hasBias: false);
        RegisterComponents();
    }

    /// <param name="x">[B, L, H] normalised hidden states, float32.</param>
    /// <param name="rope">Tables for positions 0..L-1.</param>
    /// <returns>[B, L, H] in the compute dtype.</returns>
    public override Tensor forward(Tensor x, RotaryTables rope)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], l = x.shape[1];
        int group = _heads / _kvHeads;
        var xc = MixedPrecision.Cast(x, _compute);
        var q = MixedPrecision.Linear(xc, q_proj, _compute).view(b, l, _heads, _headDim).transpose(1, 2);   // [B, heads, L, d]
        var k = MixedPrecision.Linear(xc, k_proj, _compute).view(b, l, _kvHeads, _headDim).transpose(1, 2); // [B, kvHeads, L, d]
        var v = MixedPrecision.Linear(xc, v_proj, _compute).view(b, l, _kvHeads, _headDim).transpose(1, 2); // [B, kvHeads, L, d]
        // Rotation and attention in float32: libtorch's CPU flash-attention kernel is slower in bf16 than in
        // fp32 at these sizes (head_dim 32), and the [B, heads, L, d] casts are cheap.
        q = RotaryEmbedding.Apply(MixedPrecision.Cast(q, ScalarType.Float32), rope);
        k = RotaryEmbedding.Apply(MixedPrecision.Cast(k, ScalarType.Float32), rope);
        v = MixedPrecision.Cast(v, ScalarType.Float32);
        if (group > 1)
        {
            // Each kv head serves `group` consecutive query heads (Hugging Face repeat_kv).
            k = k.unsqueeze(2).expand(b, _kvHeads, group, l, _headDim).reshape(b, _heads, l, _headDim);
            v = v.unsqueeze(2).expand(b, _kvHeads, group, l, _headDim).reshape(b, _heads, l, _headDim);
        }
        // Fused causal attention (libtorch's CPU flash kernel: no [L, L] scores kept for backward).
        var attended = F.scaled_dot_product_attention(q, k, v, null, 0.0, true); // [B, heads, L, d] fp32
        var merged = attended.transpose(1, 2).reshape(b, l, (long)_heads * _headDim);
        return MixedPrecision.Linear(merged, o_proj, _compute).MoveToOuterDisposeScope();
    }
}
