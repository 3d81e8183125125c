namespace MoeServe.Training.Train;

/// <summary>Linear warm-up to the peak, then cosine decay to the minimum at the last step.</summary>
public sealed record LearningRateSchedule(double Peak, double Min, int WarmupSteps, int TotalSteps)
{
    /// <param name="step">0-based index of the optimizer step about to be taken.</param>
    public double At(int step)
    {
        if (step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        int decaySteps = Math.Max(1, TotalSteps - 1 - WarmupSteps);
        double progress = Math.Clamp((double)(step - WarmupSteps) / decaySteps, 0, 1);
        return Min + 0.5 * (Peak - Min) * (1 + Math.Cos(Math.PI * progress));
    }
}
