namespace MoeServe.Routing;

/// <summary>Expert capacity: C = max(1, ceil(gamma * k * T / E)), at most T.</summary>
public static class Capacity
{
    public static long Of(double capacityFactor, int topK, int tokens, int experts)
    {
        if (!(capacityFactor > 0)) throw new ArgumentOutOfRangeException(nameof(capacityFactor), "capacity factor must be > 0");
        // The small epsilon keeps an exact product (1.25 * 2 * 12 / 8 = 3.75, 1.0 * 2 * 12 / 8 = 3) from
        // rounding up through floating-point error.
        long c = (long)Math.Ceiling(capacityFactor * topK * tokens / experts - 1e-9);
        return Math.Clamp(c, 1, Math.Max(1, tokens));
    }
}
