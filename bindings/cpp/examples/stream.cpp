// Streams one answer to stdout with the C++ binding.
//
//   rill_stream MODEL.gguf "PROMPT" [MAX_OUTPUT_TOKENS]
//
// Greedy decoding (temperature 0); prints each output_text.delta as it arrives, then how
// the response ended on stderr.
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

#include "json_field.hpp"
#include "rill.hpp"

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: " << argv[0] << " MODEL.gguf PROMPT [MAX_OUTPUT_TOKENS]\n";
    return 2;
  }
  try {
    const int max_tokens = argc == 4 ? std::stoi(argv[3]) : 64;
    rill::Engine engine("{\"model\":" + json_field::quote(argv[1]) + "}");
    std::string request = "{\"input\":" + json_field::quote(argv[2]) +
                          ",\"temperature\":0,\"max_output_tokens\":" + std::to_string(max_tokens) + "}";
    for (const rill::Event& event : engine.stream(request)) {
      if (json_field::string(event.json, "type") == "response.output_text.delta") {
        std::cout << json_field::string(event.json, "delta").value_or("") << std::flush;
      } else if (event.last) {
        // The terminal event's first "status" is its response's.
        std::cout << "\n";
        std::cerr << "[" << json_field::string(event.json, "type").value_or("?") << ", status "
                  << json_field::string(event.json, "status").value_or("?") << "]\n";
      }
    }
  } catch (const rill::Error& e) {
    std::cerr << "rill: " << e.what() << "\n";
    return 1;
  } catch (const std::logic_error&) {  // std::stoi
    std::cerr << "MAX_OUTPUT_TOKENS must be an integer\n";
    return 2;
  }
  return 0;
}
