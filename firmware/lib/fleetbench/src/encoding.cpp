#include "encoding.h"

#include "text.h"

namespace fleetbench {

size_t encode_json(const Reading& r, char* out, size_t cap) {
  detail::Writer w(out, cap);
  w.text("{\"id\":");
  w.u64(r.device_id);
  w.text(",\"seq\":");
  w.u64(r.seq);
  w.text(",\"t\":");
  w.u64(r.t_us);
  w.text(",\"temp\":");
  w.tenths(r.temperature_dc);
  w.text(",\"humidity\":");
  w.tenths(r.humidity_dpct);
  w.text(",\"pressure\":");
  w.u64(r.pressure_pa);
  w.text(",\"ppm\":");
  w.tenths(r.air_quality_dppm);
  w.byte('}');
  return w.finish_text();
}

size_t encode_binary(const Reading& r, uint8_t* out, size_t cap) {
  detail::Writer w(out, cap);
  w.le32(r.device_id);
  w.le32(r.seq);
  w.le64(r.t_us);
  w.le16(static_cast<uint16_t>(r.temperature_dc));
  w.le16(r.humidity_dpct);
  w.le32(r.pressure_pa);
  w.le16(r.air_quality_dppm);
  return w.finish();
}

size_t encode(Encoding encoding, const Reading& r, uint8_t* out, size_t cap) {
  if (encoding == ENCODING_BINARY) {
    return encode_binary(r, out, cap);
  }
  return encode_json(r, reinterpret_cast<char*>(out), cap);
}

const char* encoding_name(Encoding encoding) {
  return encoding == ENCODING_BINARY ? "binary" : "json";
}

}  // namespace fleetbench
