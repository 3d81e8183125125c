using System.ComponentModel.DataAnnotations;

namespace MoeServe.Api.Hosting;

/// <summary>Which checkpoint to serve and how (configuration section "Model").</summary>
public sealed class ModelOptions : IValidatableObject
{
    public const string Section = "Model";

    /// <summary>Hugging Face style checkpoint folder, absolute or relative to the content root.</summary>
    [Required] public string Path { get; set; } = "models/moeserve-moe-tiny";

    /// <summary>Model id clients send and /v1/models lists (default: the folder's name).</summary>
    public string? ServedModelName { get; set; }

    /// <summary>float32 (default on CPU) or bfloat16.</summary>
    public string ComputeDtype { get; set; } = "float32";

    /// <summary>
    /// Dtype of the expert weights and their products: auto (default), float32, bfloat16 or float16. For a
    /// checkpoint stored in bfloat16 or float16, auto is float16 on a CPU where FBGEMM runs (its packed float16
    /// products with float32 rows: the float32 model on the stored weights, at half the weight traffic), else
    /// bfloat16 for a bfloat16 checkpoint on a device with native bfloat16 products (CUDA, or a CPU with AVX-512
    /// BF16 or AMX); otherwise <see cref="ComputeDtype"/> (see MoeServe.Inference.Model.ExpertPrecision).
    /// </summary>
    public string ExpertDtype { get; set; } = "auto";

    /// <summary>
    /// Make a request's outputs independent of what else shares its engine steps (on CPU): small attention
    /// products are padded to the kernel that larger ones use, and decode attention to a multiple of 16 positions,
    /// so the hidden states are bit-identical (and so are the logprobs where the output layer runs FBGEMM's product), for
    /// prompts that join whole (a later prefill chunk attends over cached keys, which rounds differently).
    /// Costs 1-4% of batch-1 throughput with the default model, so it is off by default, as in vLLM.
    /// Without it outputs agree to about 1e-6 with float32 or float16 experts; bfloat16 experts, rounding their inputs, turn
    /// that into up to 1e-2, which can tip a greedy choice at a near-tie.
    /// </summary>
    public bool BatchInvariant { get; set; }

    /// <summary>cpu, cuda or cuda:N (CUDA needs the build with -p:TorchFlavour=cuda).</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Context length limit; at most the checkpoint's max_position_embeddings (default: that value).</summary>
    [Range(1, 10_000_000)] public int? MaxModelLen { get; set; }

    /// <summary>The torch dtype of a validated dtype name.</summary>
    public static TorchSharp.torch.ScalarType ScalarTypeOf(string dtype) =>
        dtype == "bfloat16" ? TorchSharp.torch.ScalarType.BFloat16 : TorchSharp.torch.ScalarType.Float32;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (ComputeDtype is not ("float32" or "bfloat16"))
            yield return new ValidationResult("must be float32 or bfloat16", [nameof(ComputeDtype)]);
        if (ExpertDtype is not ("auto" or "float32" or "bfloat16" or "float16"))
            yield return new ValidationResult("must be auto, float32, bfloat16 or float16", [nameof(ExpertDtype)]);
        if (!(Device == "cpu" || Device == "cuda" || (Device.StartsWith("cuda:") && int.TryParse(Device[5..], out var n) && n >= 0)))
            yield return new ValidationResult("must be cpu, cuda or cuda:N", [nameof(Device)]);
    }
}
