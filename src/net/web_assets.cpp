#include "net/web_assets.h"

#include <algorithm>

namespace chatd::net {

std::optional<WebAsset> find_web_asset(std::string_view path) {
  if (path == "/") path = "/index.html";
  const auto assets = web_assets();
  const auto found = std::find_if(assets.begin(), assets.end(),
                                  [path](const WebAsset& asset) { return asset.path == path; });
  if (found == assets.end()) return std::nullopt;
  return *found;
}

std::string_view web_content_type(std::string_view path) {
  if (path.ends_with(".html")) return "text/html; charset=utf-8";
  if (path.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (path.ends_with(".css")) return "text/css; charset=utf-8";
  if (path.ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

}  // namespace chatd::net
