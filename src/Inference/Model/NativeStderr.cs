using System.Runtime.InteropServices;

namespace MoeServe.Inference.Model;

/// <summary>
/// Runs a call with the process's standard error (file descriptor 2) pointed at /dev/null, for native code that
/// prints to it directly. libtorch offers no switch for a single warning, and TorchSharp does not bind its warning
/// handler; the other way, TORCH_CPP_LOG_LEVEL, would hide every libtorch warning for the whole process.
/// Only for short calls at startup: anything else written to stderr meanwhile is lost.
/// </summary>
internal static class NativeStderr
{
    private const int StandardError = 2;

    public static T Silenced<T>(Func<T> call)
    {
        if (!OperatingSystem.IsLinux()) return call();
        Console.Error.Flush();
        int saved = Dup(StandardError);
        int devNull = Open("/dev/null", 1 /* O_WRONLY */);
        if (saved < 0 || devNull < 0 || Dup2(devNull, StandardError) < 0)
        {
            if (saved >= 0) Close(saved);
            if (devNull >= 0) Close(devNull);
            return call(); // cannot redirect: let the output through rather than fail
        }
        try { return call(); }
        finally
        {
            Dup2(saved, StandardError);
            Close(saved);
            Close(devNull);
        }
    }

    [DllImport("libc", EntryPoint = "dup")] private static extern int Dup(int fd);
    [DllImport("libc", EntryPoint = "dup2")] private static extern int Dup2(int oldFd, int newFd);
    [DllImport("libc", EntryPoint = "open")] private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);
    [DllImport("libc", EntryPoint = "close")] private static extern int Close(int fd);
}
