// Numbers for people, as flamesight.model.units prints them:
// "1.23 ms", "45.6 MB", "1,234 samples".

const SECONDS_PER_UNIT = {
  nanoseconds: 1e-9,
  microseconds: 1e-6,
  milliseconds: 1e-3,
  seconds: 1,
};

export function isTimeUnit(unit) {
  return unit in SECONDS_PER_UNIT;
}

function roundedMagnitude(number) {
  return Math.abs(Number(number.toPrecision(3)));
}

function grouped(number, decimals) {
  return number.toLocaleString("en-US", {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  });
}

function threeDigits(number) {
  const magnitude = roundedMagnitude(number);
  if (magnitude >= 100) return grouped(number, 0);
  if (magnitude >= 10) return number.toFixed(1);
  return number.toFixed(2);
}

function formatSeconds(seconds) {
  if (seconds === 0) return "0 s";
  const magnitude = roundedMagnitude(seconds);
  for (const [scale, suffix] of [[1, "s"], [1e-3, "ms"], [1e-6, "µs"]]) {
    if (magnitude >= scale) return `${threeDigits(seconds / scale)} ${suffix}`;
  }
  return `${threeDigits(seconds / 1e-9)} ns`;
}

function formatBytes(count) {
  const magnitude = roundedMagnitude(count);
  for (const [scale, suffix] of [[1e12, "TB"], [1e9, "GB"], [1e6, "MB"], [1e3, "kB"]]) {
    if (magnitude >= scale) return `${threeDigits(count / scale)} ${suffix}`;
  }
  return `${grouped(Math.round(count), 0)} B`;
}

/** A weight or a duration in `unit`, for people. */
export function formatValue(value, unit) {
  if (isTimeUnit(unit)) return formatSeconds(value * SECONDS_PER_UNIT[unit]);
  if (unit === "bytes") return formatBytes(value);
  if (Number.isInteger(value)) return `${grouped(value, 0)} samples`;
  return `${grouped(value, 2)} samples`;
}

/** "12.4 ms of 2.31 s", "1,203 of 45,000 samples", "3.1 MB of 120 MB". */
export function formatRange(selected, total, unit) {
  if (isTimeUnit(unit) || unit === "bytes") {
    return `${formatValue(selected, unit)} of ${formatValue(total, unit)}`;
  }
  const part = formatValue(Math.round(selected), unit).replace(/ samples$/, "");
  return `${part} of ${formatValue(Math.round(total), unit)}`;
}

/** A percentage with one decimal: "12.3%". */
export function formatPercent(part, whole) {
  if (!(whole > 0)) return "0%";
  return `${((100 * part) / whole).toFixed(1)}%`;
}

/** A byte count of a file: "1.2 MB". */
export function formatSize(bytes) {
  return formatBytes(bytes);
}

/** A date and time in the browser's locale. */
export function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}
