using TorchSharp;

namespace MoeServe.Api.Hosting;

/// <summary>Maps a device setting (Model:Device, ExpertParallel:Devices) to a libtorch device, failing clearly where CUDA is absent.</summary>
public static class DeviceSelection
{
    /// <param name="key">The configuration key named in the error.</param>
    public static torch.Device Resolve(string setting, string key = "Model:Device")
    {
        if (setting == "cpu") return torch.CPU;
        if (!torch.cuda.is_available())
            throw new ArgumentException($"{key} is '{setting}' but CUDA is not available (build with -p:TorchFlavour=cuda on a machine with an NVIDIA GPU)");
        var device = new torch.Device(setting);
        if (device.index >= torch.cuda.device_count())
            throw new ArgumentException($"{key} is '{setting}' but only {torch.cuda.device_count()} CUDA devices are visible");
        return device;
    }
}
