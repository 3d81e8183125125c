using TorchSharp;

namespace MoeServe.Routing;

/// <summary>
/// Long-lived libtorch scalars for the constants of every engine step. An implicitly converted Scalar
/// (<c>t.add_(1e-5)</c>) is a finalizable object of which TorchSharp passes only the native handle, so the
/// GC may finalize it, on its own thread, while libtorch still reads it; a process that allocates on other
/// threads then fails at random ("Expected false to be true" from Scalar::toFloat). Hot paths use these
/// instead, or a Scalar in a <c>using</c> that lives past the call.
/// </summary>
public static class Scalars
{
    public static readonly Scalar Zero = 0L.ToScalar();
    public static readonly Scalar One = 1.0.ToScalar();
    public static readonly Scalar MinusOne = (-1L).ToScalar();
    public static readonly Scalar ZeroFloat = 0.0.ToScalar();
    public static readonly Scalar NegativeInfinity = double.NegativeInfinity.ToScalar();
    /// <summary>Floor of a renormalisation denominator.</summary>
    public static readonly Scalar Tiny = 1e-20.ToScalar();
}
