using TorchSharp;

namespace MoeServe.Api.Hosting;

/// <summary>Maps the Model:Device setting to a libtorch device, failing clearly where CUDA is absent.</summary>
public static class DeviceSelection
{
    public static torch.Device Resolve(string setting)
    {
        if (setting == "cpu") return torch.CPU;
        if (!torch.cuda.is_available())
            throw new ArgumentException($"Model:Device is '{setting}' but CUDA is not available (build with -p:TorchFlavour=cuda on a machine with an NVIDIA GPU)");
        return new torch.Device(setting);
    }
}
