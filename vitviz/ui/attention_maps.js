// The Attention tab's pictures, drawn in the browser (vitviz/views/attention_browser.py says why).
//
// The server sends, once per photo, the photo and every layer's attention weights; this script
// draws from them what vitviz.views.attention.attention_pictures draws on the server: the photo
// with its patch grid and the clicked patch outlined, every head of one layer, layers × heads,
// the rollout and the class token's maps. Same colours, same geometry: viridis blended at 60 %
// over the photo, one colour per patch (the pixel → patch rule of vitviz.views.pictures), a label
// strip above each tile. A click, a layer, a direction or a colour scale redraws them here.
//
// Each picture is a gr.HTML component holding one <img>; they share this one page-wide object.
// `mount` is each component's js_on_load; the photo's component carries the data as its value.
window.vitvizAttention = window.vitvizAttention || (() => {
  const ALPHA = 0.6;       // the weight of the colour over the photo (vitviz.views.pictures.overlays)
  const GAP = 6;           // between the tiles of a figure (vitviz.views.pictures.tile)
  const views = {};        // role ("click", "heads", "overview", "rollout", "classToken") → its <img>
  let data = null;         // the decoded payload of the photo on screen
  let view = null;         // {patch, layer, direction, scale}: what is drawn

  function unpack(base64) {  // uint16 fixed point → Float32Array of weights in [0, 1]
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const words = new DataView(bytes.buffer);
    const weights = new Float32Array(bytes.length / 2);
    for (let i = 0; i < weights.length; i++) weights[i] = words.getUint16(2 * i, true) / 65535;
    return weights;
  }

  // The first pixel of each patch along a side of `pixels` cut into `cells` (patch_box's ceil).
  const starts = (cells, pixels) => Array.from({length: cells + 1}, (_, i) => Math.ceil(i * pixels / cells));

  function colour(value) {  // a value in [0, 1] → "rgb(…)" along the viridis stops
    const stops = data.colours.viridis, v = Math.min(Math.max(value, 0), 1) * (stops.length - 1);
    const lower = Math.min(Math.floor(v), stops.length - 2), frac = v - lower;
    const rgb = [0, 1, 2].map((c) => Math.round(stops[lower][c] * (1 - frac) + stops[lower + 1][c] * frac));
    return `rgb(${rgb})`;
  }

  // One patch's weights in one (T, T) matrix: its row ("query": what it attends to) or its column
  // ("key": what attends to it), patch tokens only → Float32Array(rows · cols).
  function patchSlice(matrix, offset, patch, direction) {
    const tokens = data.tokens, first = data.classToken ? 1 : 0, token = first + patch;
    const line = new Float32Array(tokens - first);
    for (let j = first; j < tokens; j++) {
      line[j - first] = direction === "query" ? matrix[offset + token * tokens + j] : matrix[offset + j * tokens + token];
    }
    return line;
  }

  function scaled(maps, scale) {  // normalise_maps: by each map's peak ("local") or one shared peak
    const peak = (values) => Math.max(1e-12, ...values);
    const shared = peak(maps.map((m) => peak(m)));
    return maps.map((m) => { const top = scale === "local" ? peak(m) : shared; return m.map((v) => v / top); });
  }

  function canvas(width, height) {
    const c = document.createElement("canvas");
    c.width = width; c.height = height;
    return [c, c.getContext("2d")];
  }

  function outline(g, patch, x, y, width, height) {  // outline_patch_in_place: a line of min(h, w) / 100 px
    const [rows, cols] = data.grid, row = Math.floor(patch / cols), col = patch % cols;
    const xs = starts(cols, width), ys = starts(rows, height), line = Math.max(1, Math.floor(Math.min(width, height) / 100));
    const x0 = Math.min(xs[col], width - 1), y0 = Math.min(ys[row], height - 1);
    const w = Math.max(1, xs[col + 1] - x0), h = Math.max(1, ys[row + 1] - y0);
    g.fillStyle = `rgb(${data.colours.outline})`;
    g.fillRect(x + x0, y + y0, w, line); g.fillRect(x + x0, y + y0 + h - line, w, line);
    g.fillRect(x + x0, y + y0, line, h); g.fillRect(x + x0 + w - line, y + y0, line, h);
  }

  // A map in [0, 1] blended over the photo at (x, y), one colour per patch, `patch` outlined.
  function overlay(g, map, x, y, [height, width], patch) {
    const [rows, cols] = data.grid, xs = starts(cols, width), ys = starts(rows, height);
    g.drawImage(data.image, x, y, width, height);
    g.globalAlpha = ALPHA;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        g.fillStyle = colour(map[r * cols + c]);
        g.fillRect(x + xs[c], y + ys[r], xs[c + 1] - xs[c], ys[r + 1] - ys[r]);
      }
    }
    g.globalAlpha = 1;
    if (patch !== null) outline(g, patch, x, y, width, height);
  }

  function tiled(maps, labels, columns, size, patch) {  // vitviz.views.pictures.tile of overlays
    const [height, width] = size, font = Math.max(10, Math.min(18, Math.floor(width / 8))), label = font + 6;
    columns = Math.max(1, Math.min(columns, maps.length));
    const rows = Math.ceil(maps.length / columns);
    const [c, g] = canvas(columns * (width + GAP) + GAP, rows * (height + label + GAP) + GAP);
    g.fillStyle = "white"; g.fillRect(0, 0, c.width, c.height);
    maps.forEach((map, i) => {
      const x = GAP + (i % columns) * (width + GAP), y = GAP + Math.floor(i / columns) * (height + label + GAP);
      g.fillStyle = "black"; g.font = `${font}px sans-serif`; g.textBaseline = "top";
      g.fillText(labels[i], x, y + 1);
      overlay(g, map, x, y + label, size, patch);
    });
    return c;
  }

  function photoWithGrid(patch) {  // Analysis.click_target: faint lines between patches, `patch` outlined
    const [height, width] = data.sizes.click, [rows, cols] = data.grid;
    const [c, g] = canvas(width, height);
    g.drawImage(data.image, 0, 0, width, height);
    g.fillStyle = "rgba(254, 254, 254, 0.5)";  // draw_patch_grid: v / 2 + 127
    new Set(starts(cols, width).slice(1, -1)).forEach((x) => g.fillRect(x, 0, 1, height));
    new Set(starts(rows, height).slice(1, -1)).forEach((y) => g.fillRect(0, y, width, 1));
    outline(g, patch, 0, 0, width, height);
    return c;
  }

  function draw() {
    if (!data || !data.image || !view) return;
    const [layers, heads, tokens] = data.shape, {patch, direction, scale} = view;
    const layer = Math.min(Math.max(Math.round(view.layer), 1), layers) - 1, square = tokens * tokens;
    const range = (n) => Array.from({length: n}, (_, i) => i);
    const everyLayer = range(layers).map((l) => range(heads).map(
      (h) => patchSlice(data.attention, (l * heads + h) * square, patch, direction)));
    const headNames = range(heads).map((h) => `H${h + 1}`);
    const pictures = {
      click: () => photoWithGrid(patch),
      heads: () => tiled(scaled(everyLayer[layer], scale), headNames, Math.min(4, heads), data.sizes.head, patch),
      overview: () => tiled(scaled(everyLayer.flat(), scale),
        range(layers).flatMap((l) => range(heads).map((h) => `L${l + 1} H${h + 1}`)), heads, data.sizes.thumb, patch),
      rollout: () => {
        const [height, width] = data.sizes.rollout, [c, g] = canvas(width, height);
        overlay(g, scaled([patchSlice(data.rollout, 0, patch, direction)], "local")[0], 0, 0, data.sizes.rollout, patch);
        return c;
      },
      classToken: () => data.classToken ? tiled(scaled(range(heads).map((h) => data.attention.slice(
        (layer * heads + h) * square + 1, (layer * heads + h) * square + tokens)), scale), headNames,
        Math.min(4, heads), data.sizes.head, null) : null,
    };
    for (const [role, img] of Object.entries(views)) {
      const picture = img.isConnected ? pictures[role]() : null;
      if (picture) img.src = picture.toDataURL();
    }
  }

  function receive(payload) {  // a new photo (or checkpoint, or language): decode, then draw
    view = payload ? {...payload.view} : null;
    if (!payload) {
      data = null;
      Object.values(views).forEach((img) => img.removeAttribute("src"));
      return;
    }
    const next = {...payload, tokens: payload.shape[2], attention: unpack(payload.attention),
                  rollout: unpack(payload.rollout), image: null};
    data = next;
    const image = new Image();
    image.onload = () => { if (data === next) { next.image = image; draw(); } };
    image.src = payload.photo;
  }

  // The clicked patch: the click measured in the photo's own pixels, as gr.SelectData.index
  // would report it (vitviz.views.pictures.click_to_patch), drawn at once, then sent to the server.
  function clicked(event, img, trigger) {
    if (!data || !img.naturalWidth) return;
    const box = img.getBoundingClientRect();
    const x = Math.round((event.clientX - box.left) * img.naturalWidth / box.width);
    const y = Math.round((event.clientY - box.top) * img.naturalHeight / box.height);
    const [rows, cols] = data.grid, [height, width] = data.sizes.click;
    if (x < 0 || y < 0 || x > width || y > height) return;
    const col = Math.min(Math.floor(x * cols / width), cols - 1), row = Math.min(Math.floor(y * rows / height), rows - 1);
    view = {...view, patch: row * cols + col};
    draw();
    trigger("select", {index: [x, y], value: null});
  }

  return {
    mount(element, props, trigger, watch) {
      const img = element.querySelector("img"), role = props.role;
      views[role] = img;
      img.alt = props.label || "";
      watch("label", () => { img.alt = props.label || ""; });  // the language picker renames it
      const button = element.querySelector("button");
      if (button) {
        const name = () => { button.title = props.full_screen || ""; button.setAttribute("aria-label", button.title); };
        name();
        watch("full_screen", name);
        button.addEventListener("click", () => img.requestFullscreen?.());
      }
      if (role === "click") {
        img.addEventListener("click", (event) => clicked(event, img, trigger));
        watch("value", () => receive(props.value));
        receive(props.value);
      } else {
        draw();
      }
    },
    // The layer slider and the direction and colour-scale radios call this as they change.
    controls(layer, direction, scale) {
      if (!view) return;
      view = {...view, layer, direction, scale};
      draw();
    },
  };
})();
