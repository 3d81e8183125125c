namespace MoeServe.Routing;

/// <summary>
/// How a checkpoint turns gate probabilities into expert weights ("native weights").
/// Mixtral always renormalises its top-k probabilities; OLMoE only when norm_topk_prob is true.
/// </summary>
/// <param name="TopK">Experts per token (num_experts_per_tok).</param>
/// <param name="NumExperts">Experts in the layer (E).</param>
/// <param name="RenormalizeTopK">Divide the chosen probabilities by their sum.</param>
public sealed record GateSemantics(int TopK, int NumExperts, bool RenormalizeTopK);
