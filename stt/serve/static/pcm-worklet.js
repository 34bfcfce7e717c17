// AudioWorklet for the stt page: the microphone at the AudioContext's rate in, 16 kHz mono
// little-endian int16 PCM out, posted to the main thread in frames of ~100 ms.
//
// Downsampling low-passes first (a Blackman-windowed sinc FIR, cut-off just under the target's
// Nyquist) and then interpolates linearly between the filtered samples. The filter's history and
// the fractional read position carry across the 128-sample render blocks, so the output is one
// continuous signal with no clicks at block edges.
//
// Messages: the node posts {pcm: ArrayBuffer (Int16, LE), peak: 0..1} for each frame. Sent
// "flush", it posts what it holds as a last, shorter frame, then {flushed: true}.

function lowpass(inRate, outRate) {
  const ratio = inRate / outRate;
  if (ratio <= 1.01) return new Float32Array([1]); // upsampling or near: nothing to remove
  const cutoff = (0.45 * outRate) / inRate; // cycles per input sample: 7.2 kHz for 16 kHz out
  const half = Math.ceil(8 * ratio);
  const n = 2 * half + 1;
  const taps = new Float32Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = i - half;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const window =
      0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (n - 1));
    taps[i] = sinc * window;
    sum += taps[i];
  }
  for (let i = 0; i < n; i++) taps[i] /= sum; // unity gain at DC
  return taps;
}

class PcmWorklet extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.outRate = opts.targetRate || 16000;
    this.frameSamples = Math.max(1, Math.round((this.outRate * (opts.frameMs || 100)) / 1000));
    this.step = sampleRate / this.outRate; // input samples per output sample
    this.taps = lowpass(sampleRate, this.outRate);
    this.history = new Float32Array(2 * this.taps.length); // each sample written twice: no wrap
    this.head = 0;
    this.filtered = new Float32Array(0);
    this.prev = 0; // the last filtered sample of the previous block
    this.pos = 0; // where the next output sample lies, in input samples after `prev`
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.peak = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post();
        this.port.postMessage({ flushed: true });
      }
    };
  }

  post() {
    if (this.fill === 0) return;
    const pcm = this.frame.slice(0, this.fill).buffer;
    this.port.postMessage({ pcm, peak: this.peak }, [pcm]);
    this.fill = 0;
    this.peak = 0;
  }

  emit(value) {
    const v = value > 1 ? 1 : value < -1 ? -1 : value;
    const a = v < 0 ? -v : v;
    if (a > this.peak) this.peak = a;
    this.frame[this.fill++] = v < 0 ? Math.round(v * 32768) : Math.round(v * 32767);
    if (this.fill === this.frameSamples) this.post();
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || !input[0]) return true; // not connected (yet)
    const n = input[0].length;
    const channels = input.length;
    if (this.filtered.length !== n) this.filtered = new Float32Array(n);
    const taps = this.taps;
    const len = taps.length;
    const hist = this.history;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      x /= channels; // mono
      if (len === 1) {
        this.filtered[i] = x;
        continue;
      }
      this.head = (this.head + 1) % len;
      hist[this.head] = x;
      hist[this.head + len] = x;
      // hist[head + 1 .. head + len] is the last `len` samples, oldest first
      let y = 0;
      for (let k = 0; k < len; k++) y += taps[k] * hist[this.head + 1 + k];
      this.filtered[i] = y;
    }
    // The sequence is [prev, filtered[0], ..., filtered[n-1]]: index 0 is prev.
    let pos = this.pos;
    while (pos < n) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = i === 0 ? this.prev : this.filtered[i - 1];
      const b = this.filtered[i];
      this.emit(a + (b - a) * frac);
      pos += this.step;
    }
    this.pos = pos - n;
    this.prev = this.filtered[n - 1];
    return true;
  }
}

registerProcessor("pcm-worklet", PcmWorklet);
