using System.Text.Json.Nodes;
using Microsoft.OpenApi;
using MoeServe.Api.Endpoints;
using MoeServe.Api.Hosting;
using MoeServe.Routing;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace MoeServe.Api.OpenApi;

/// <summary>Documents the X-Routing-Policy / X-Capacity-Factor request and response headers on generation operations.</summary>
public sealed class RoutingHeadersOperationFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (!context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<RoutingHeadersMetadata>().Any()) return;
        operation.Parameters ??= [];
        operation.Parameters.Add(new OpenApiParameter
        {
            Name = RoutingSelection.PolicyHeader,
            In = ParameterLocation.Header,
            Description = "Routing policy for this request (default: configuration Routing:Policy). Must agree with moe_routing.policy in the body.",
            Schema = new OpenApiSchema { Type = JsonSchemaType.String, Enum = RoutingPolicyNames.All.Select(n => (JsonNode)JsonValue.Create(n)!).ToList() },
        });
        operation.Parameters.Add(new OpenApiParameter
        {
            Name = RoutingSelection.CapacityHeader,
            In = ParameterLocation.Header,
            Description = "Capacity factor gamma > 0 for capacity-aware policies: C = max(1, ceil(gamma * k * T / E)).",
            Schema = new OpenApiSchema { Type = JsonSchemaType.Number, Format = "double" },
        });
        if (operation.Responses?.TryGetValue("200", out var ok) == true && ok is OpenApiResponse response)
        {
            response.Headers ??= new Dictionary<string, IOpenApiHeader>();
            response.Headers[RoutingSelection.PolicyHeader] = new OpenApiHeader { Description = "The routing policy applied.", Schema = new OpenApiSchema { Type = JsonSchemaType.String } };
            response.Headers[RoutingSelection.CapacityHeader] = new OpenApiHeader { Description = "The capacity factor applied, or 'none'.", Schema = new OpenApiSchema { Type = JsonSchemaType.String } };
        }
    }
}
