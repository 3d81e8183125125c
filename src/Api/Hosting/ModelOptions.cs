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

    /// <summary>cpu, cuda or cuda:N (CUDA needs the build with -p:TorchFlavour=cuda).</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Context length limit; at most the checkpoint's max_position_embeddings (default: that value).</summary>
    [Range(1, 10_000_000)] public int? MaxModelLen { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (ComputeDtype is not ("float32" or "bfloat16"))
            yield return new ValidationResult("must be float32 or bfloat16", [nameof(ComputeDtype)]);
        if (!(Device == "cpu" || Device == "cuda" || (Device.StartsWith("cuda:") && int.TryParse(Device[5..], out var n) && n >= 0)))
            yield return new ValidationResult("must be cpu, cuda or cuda:N", [nameof(Device)]);
    }
}
