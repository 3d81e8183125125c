using System.Text.Json;
using MoeServe.Training.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoeServe.Training.Train;

/// <summary>One held-out evaluation.</summary>
public sealed record EvalRecord(int Step, IReadOnlyList<DomainLoss> Losses);

/// <summary>Mean training losses over a stretch of steps ending at <see cref="Step"/>.</summary>
public sealed record LossRecord(int Step, double Loss, double AuxLoss, double LearningRate);

/// <summary>What a run has done so far, saved in state.json next to the weights.</summary>
public sealed record TrainProgress
{
    /// <summary>Optimizer steps completed.</summary>
    public int Step { get; init; }
    public long TokensSeen { get; init; }
    /// <summary>Wall-clock seconds spent training, over every session of the run.</summary>
    public double ElapsedSeconds { get; init; }
    /// <summary>The command line that started the run.</summary>
    public string Command { get; init; } = "";
    public List<string> ResumedWith { get; init; } = [];
    public required TrainSettings Settings { get; init; }
    public List<EvalRecord> Evals { get; init; } = [];
    public List<LossRecord> Losses { get; init; } = [];
}

/// <summary>
/// The resumable state of a run, in &lt;out&gt;/.train-state/: model.safetensors (float32, exact),
/// optimizer.bin (TorchSharp's AdamW save_state_dict: per parameter step, exp_avg, exp_avg_sq; per group
/// its options), torch-rng.bin (the global CPU generator) and state.json (<see cref="TrainProgress"/>).
/// The data sampler needs no saved state: step s's batch is drawn from a generator seeded by (seed, s).
/// Written to a sibling folder first and swapped in, so a crash mid-save leaves the previous state.
/// </summary>
public static class TrainState
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Whether a saved run exists (recovering it first if a save was cut off between its two renames).</summary>
    public static bool Exists(string stateDir)
    {
        string previous = stateDir + ".previous";
        if (!Directory.Exists(stateDir) && File.Exists(Path.Combine(previous, "state.json"))) Directory.Move(previous, stateDir);
        return File.Exists(Path.Combine(stateDir, "state.json"));
    }

    public static void Save(string stateDir, MixtralForCausalLM model, AdamW optimizer, TrainProgress progress)
    {
        string partial = stateDir + ".partial", previous = stateDir + ".previous";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        Directory.CreateDirectory(partial);
        HfCheckpoint.SaveWeights(model, Path.Combine(partial, "model.safetensors"), SafetensorsDtype.F32);
        optimizer.save_state_dict(Path.Combine(partial, "optimizer.bin"));
        using (var rng = torch.get_rng_state()) File.WriteAllBytes(Path.Combine(partial, "torch-rng.bin"), rng.data<byte>().ToArray());
        File.WriteAllText(Path.Combine(partial, "state.json"), JsonSerializer.Serialize(progress, Json));
        if (Directory.Exists(previous)) Directory.Delete(previous, recursive: true);
        if (Directory.Exists(stateDir)) Directory.Move(stateDir, previous);
        Directory.Move(partial, stateDir);
        if (Directory.Exists(previous)) Directory.Delete(previous, recursive: true);
    }

    /// <summary>Reads state.json only.</summary>
    public static TrainProgress ReadProgress(string stateDir) =>
        JsonSerializer.Deserialize<TrainProgress>(File.ReadAllText(Path.Combine(stateDir, "state.json")), Json)
        ?? throw new InvalidDataException($"{stateDir}/state.json is empty");

    /// <summary>Restores weights, optimizer moments and the torch generator saved by <see cref="Save"/>.</summary>
    public static void Restore(string stateDir, MixtralForCausalLM model, AdamW optimizer)
    {
        HfCheckpoint.LoadWeights(model, stateDir);
        optimizer.load_state_dict(Path.Combine(stateDir, "optimizer.bin"));
        var rng = File.ReadAllBytes(Path.Combine(stateDir, "torch-rng.bin"));
        using var state = torch.tensor(rng, ScalarType.Byte);
        torch.set_rng_state(state);
    }
}
