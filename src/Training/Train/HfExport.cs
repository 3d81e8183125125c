using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MoeServe.Training.Model;

namespace MoeServe.Training.Train;

/// <summary>
/// The finished model as a Hugging Face folder the server loads: config.json, generation_config.json,
/// model.safetensors (BF16), the data's tokenizer files, and a README.md model card.
/// </summary>
public static class HfExport
{
    public static void Write(string outDir, MixtralForCausalLM model, TrainingCorpus corpus, TrainProgress progress, long parameters, long active)
    {
        Directory.CreateDirectory(outDir);
        HfCheckpoint.Save(model, outDir, SafetensorsDtype.BF16, corpus.PadId,
            new Dictionary<string, JsonNode?> { ["router_aux_loss_coef"] = progress.Settings.AuxLossCoef });
        foreach (var file in Directory.EnumerateFiles(corpus.TokenizerDir))
            File.Copy(file, Path.Combine(outDir, Path.GetFileName(file)), overwrite: true);
        File.WriteAllText(Path.Combine(outDir, "README.md"), ModelCard(model, corpus, progress, parameters, active));
    }

    private static string ModelCard(MixtralForCausalLM model, TrainingCorpus corpus, TrainProgress progress, long parameters, long active)
    {
        var c = model.Config;
        var s = progress.Settings;
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(s.OutDir)));
        sb.AppendLine($"# {name}");
        sb.AppendLine();
        sb.AppendLine($"A small Mixtral-architecture mixture-of-experts language model trained from scratch on CPU by " +
            $"`moeserve-train train` (MoeServe), for serving tests and demonstrations. It is a toy: {parameters:N0} parameters, " +
            $"{progress.TokensSeen:N0} training tokens. Do not expect facts or reasoning from it.");
        sb.AppendLine();
        sb.AppendLine("## Architecture");
        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("|---|---|");
        sb.AppendLine($"| Parameters | {parameters:N0} ({active:N0} active per token) |");
        sb.AppendLine($"| Layers / hidden / vocabulary | {c.NumLayers} / {c.HiddenSize} / {c.VocabSize} |");
        sb.AppendLine($"| Attention | {c.NumHeads} query heads, {c.NumKvHeads} key-value heads of {c.HeadDim}, rotary (theta {c.RopeTheta.ToString(inv)}), context {c.MaxPositionEmbeddings} |");
        sb.AppendLine($"| Experts | {c.NumExperts} SwiGLU experts of FFN {c.IntermediateSize}, top-{c.ExpertsPerToken}, renormalised weights |");
        sb.AppendLine($"| Norm | RMSNorm, eps {c.RmsNormEps.ToString(inv)}; untied embeddings |");
        sb.AppendLine("| Weights | model.safetensors, bfloat16 (rounded from the float32 master weights) |");
        sb.AppendLine();
        sb.AppendLine("## Data");
        sb.AppendLine();
        sb.AppendLine($"Built by `moeserve-train data` (manifest seed {corpus.Manifest["seed"]?.ToJsonString() ?? "?"}); documents of each domain " +
            "concatenated into one token stream; training windows drawn by each domain's share of the training tokens.");
        sb.AppendLine();
        sb.AppendLine("| Domain | Kind | Source | License | Train documents | Train tokens | Share | Held-out tokens |");
        sb.AppendLine("|---|---|---|---|---:|---:|---:|---:|");
        double total = Math.Max(1, corpus.TrainTokens);
        foreach (var d in corpus.Domains)
            sb.AppendLine($"| {d.Name} | {d.Kind} | {Cell(d.Source)} | {Cell(d.License)} | {d.TrainDocuments:N0} | {d.Train.Length:N0} | {(d.Train.Length / total).ToString("P1", inv)} | {d.Heldout.Length:N0} |");
        sb.AppendLine();
        sb.AppendLine("## Training");
        sb.AppendLine();
        sb.AppendLine("```");
        sb.AppendLine(progress.Command);
        foreach (var resumed in progress.ResumedWith) sb.AppendLine(resumed);
        sb.AppendLine("```");
        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("|---|---|");
        sb.AppendLine($"| Seed | {s.Seed} |");
        sb.AppendLine($"| Steps | {progress.Step:N0} x {s.BatchSize} sequences x {s.SeqLen} tokens = {progress.TokensSeen:N0} tokens |");
        sb.AppendLine($"| Precision | float32 weights and optimizer state; matrix multiplies in {s.ComputeDtype}; norms, router softmax, residual stream and loss in float32 |");
        sb.AppendLine($"| Optimizer | AdamW (betas {s.Beta1.ToString(inv)}, {s.Beta2.ToString(inv)}; weight decay {s.WeightDecay.ToString(inv)} on matrices), gradient clipping {s.GradClip.ToString("0.0##", inv)} |");
        sb.AppendLine($"| Learning rate | {s.LearningRate.ToString("G3", inv)}, linear warm-up {s.WarmupSteps} steps, cosine decay to {(s.LearningRate * s.MinLrRatio).ToString("G3", inv)} |");
        sb.AppendLine($"| Loss | next-token cross-entropy + {s.AuxLossCoef.ToString(inv)} x load-balancing loss (E * sum f_e P_e, 1.0 = uniform; mean over layers) |");
        sb.AppendLine($"| Hardware | CPU, {s.Threads} libtorch threads; {Trainer.FormatDuration(TimeSpan.FromSeconds(progress.ElapsedSeconds))} ({(progress.TokensSeen / Math.Max(1, progress.ElapsedSeconds)).ToString("N0", inv)} tokens/s) |");
        sb.AppendLine();
        sb.AppendLine("## Results");
        sb.AppendLine();
        var lastLoss = progress.Losses.LastOrDefault();
        if (lastLoss is not null)
            sb.AppendLine($"Final training loss {lastLoss.Loss.ToString("F3", inv)} (mean of the last steps up to step {lastLoss.Step}), " +
                $"load-balancing loss {lastLoss.AuxLoss.ToString("F3", inv)}.");
        sb.AppendLine();
        if (progress.Evals.Count > 0)
        {
            var final = progress.Evals[^1];
            sb.AppendLine($"Held-out loss per domain at step {final.Step} (nats per token, on fixed held-out windows that overlap where a domain's held-out text is short):");
            sb.AppendLine();
            sb.AppendLine("| Domain | Loss | Perplexity | Tokens |");
            sb.AppendLine("|---|---:|---:|---:|");
            foreach (var l in final.Losses)
                sb.AppendLine($"| {l.Domain} | {l.Loss.ToString("F3", inv)} | {l.Perplexity.ToString("F1", inv)} | {l.Tokens:N0} |");
            sb.AppendLine();
            if (progress.Evals.Count > 1)
            {
                var domains = final.Losses.Select(l => l.Domain).ToList();
                sb.AppendLine("Held-out loss during training:");
                sb.AppendLine();
                sb.AppendLine("| Step | " + string.Join(" | ", domains) + " |");
                sb.AppendLine("|---:|" + string.Concat(domains.Select(_ => "---:|")));
                foreach (var e in progress.Evals)
                    sb.AppendLine($"| {e.Step} | " + string.Join(" | ", domains.Select(d => e.Losses.FirstOrDefault(l => l.Domain == d)?.Loss.ToString("F3", inv) ?? "")) + " |");
                sb.AppendLine();
            }
        }
        sb.AppendLine("## Use");
        sb.AppendLine();
        sb.AppendLine("Serve it with MoeServe (or load it with Hugging Face transformers as a `MixtralForCausalLM`). Plain text ends with " +
            "`<|endoftext|>`; chat uses ChatML (`<|im_start|>`, `<|im_end|>`), see tokenizer_config.json.");
        return sb.ToString();
    }

    private static string Cell(string? text) => string.IsNullOrEmpty(text) ? "" : text.Replace("|", "\\|").Replace("\n", " ");
}
