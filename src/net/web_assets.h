#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace chatd::net {

// One file of the browser page (web/), compiled into the binary.
struct WebAsset {
  std::string_view path;  // as requested: "/index.html", "/chat.js"
  std::string_view body;
};

// Every file of web/, generated at build time by cmake/embed_web.cmake.
std::span<const WebAsset> web_assets();

// The asset a request path names ("/" is "/index.html"), if any.
std::optional<WebAsset> find_web_asset(std::string_view path);

// Content-Type for an asset path, from its extension.
std::string_view web_content_type(std::string_view path);

}  // namespace chatd::net
